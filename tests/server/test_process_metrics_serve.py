"""A real ``signalbox serve`` reports its own process: ``signalbox_process_*`` at /metrics
with HELP and TYPE, queryable through ``/api/v1/query``, moving from pass to pass; and
``[server] memory_warn_bytes`` is said once in its log, not at every pass."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

from tests.cli.helpers import free_port
from tests.serving import fetch, serve_process, wait_for


def query(base: str, expr: str) -> list[dict[str, object]]:
    status, body = fetch(base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, body
    result: list[dict[str, object]] = json.loads(body)["data"]["result"]
    return result


def scalar(base: str, expr: str) -> float | None:
    got = query(base, expr)
    if not got:
        return None
    value = got[0]["value"]
    assert isinstance(value, list)
    return float(value[1])


def test_serve_exposes_and_answers_its_process_metrics(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "signalbox.toml").write_text(
        f'host = "e2e"\n[collect]\ninterval = "1s"\n'
        f"[server]\nport = {port}\nmemory_warn_bytes = 1048576\n"
    )
    output: list[str] = []
    with serve_process(tmp_path, port, output) as base:
        rss = wait_for(lambda: query(base, "signalbox_process_resident_memory_bytes"))
        assert rss[0]["metric"] == {
            "__name__": "signalbox_process_resident_memory_bytes",
            "host": "e2e",
        }
        value = rss[0]["value"]
        assert isinstance(value, list) and float(value[1]) > 10 * 2**20

        fds = scalar(base, "signalbox_process_open_fds")
        max_fds = scalar(base, "signalbox_process_max_fds")
        assert fds is not None and max_fds is not None and 3 < fds < max_fds
        threads = scalar(base, "signalbox_process_threads")
        assert threads is not None and threads >= 3  # HTTP, collect, compact at least
        gens = query(base, "signalbox_process_gc_collections_total")
        assert sorted(str(g["metric"]["generation"]) for g in gens) == ["0", "1", "2"]  # type: ignore[index]

        # CPU time is a counter that moves while serve works: a later pass stores more
        first = scalar(base, "signalbox_process_cpu_seconds_total")
        assert first is not None and first > 0
        for _ in range(20):  # some work for the process to account for
            fetch(base + "/metrics")
        wait_for(lambda: (scalar(base, "signalbox_process_cpu_seconds_total") or 0) > first)

        status, text = fetch(base + "/metrics")
        assert status == 200
        for name, kind in [
            ("signalbox_process_resident_memory_bytes", "gauge"),
            ("signalbox_process_virtual_memory_bytes", "gauge"),
            ("signalbox_process_open_fds", "gauge"),
            ("signalbox_process_max_fds", "gauge"),
            ("signalbox_process_cpu_seconds_total", "counter"),
            ("signalbox_process_start_time_seconds", "gauge"),
            ("signalbox_process_threads", "gauge"),
            ("signalbox_process_gc_seconds_total", "counter"),
        ]:
            assert f"# TYPE {name} {kind}\n" in text
            assert f"# HELP {name} " in text
            assert f'{name}{{host="e2e"}} ' in text
        assert 'signalbox_process_gc_collections_total{generation="2",host="e2e"} ' in text
    log = output[0]
    assert log.count("memory_warn_bytes") == 1, log  # above 1 MiB all along: said once
    assert "resident memory" in log and "passed [server] memory_warn_bytes" in log
