"""The first ``sum by (shard)`` a fresh ``signalbox serve`` answers over a million series.

A store of ``--files`` spool files x 500 series of one metric,
``bench_requests{shard,file,line}`` (2,000 files: 1,000,000 series, 16 shards), is written
by one ``collect --once`` (``bench/spool_ingest.py``'s helpers). Then, ``--rounds`` times,
a ``signalbox serve`` is started on it and asked, through the real HTTP API:

* the first ``/api/v1/query?query=sum by (shard) (bench_requests)`` sent the moment serve
  says it is serving (``--wait S``: S seconds later instead) — "cold";
* the same query twice more at other explicit times (the results cache keys answers by
  time, so each is evaluated) — "warm";
* with ``--one-series``: one series written over 8 days into the same store (rolled up),
  read whole at a 1 m step through ``/api/v1/query_range`` — issue 15's "one series over 8
  days under 20 ms" with a million other series beside it.

Each answer is checked (16 groups, their total the values written). ``--baseline-src DIR``
(another checkout's ``src``, e.g. ``git archive <commit> src | tar -x -C /tmp/base``):
that tree's ``serve`` on the same store in the same rounds, the order swapped each round;
medians of the per-round ratios. ``--pg URL``: the store on PostgreSQL (a new schema,
dropped after) instead of SQLite.

Usage: .venv/bin/python bench/cold_query.py [--files 2000] [--rounds 3] [--wait 0]
       [--one-series] [--baseline-src DIR] [--pg URL] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import spool_ingest as si

SHARDS = 16
QUERY = "sum by (shard) (bench_requests)"
DAY_MS = 86_400_000


def build(root: Path, files: int, store: str | None) -> float:
    """The store: one ``collect --once`` of ``files`` labelled spool files; its time (s)."""
    si.FILES, si.N = files, files * si.LINES
    sb = si.Signalbox(root, shards=SHARDS, store=store)
    # serve collects the same (unchanged) files at start, then once an hour: its loops
    # stay out of the timed queries' way
    cfg = root / "signalbox.toml"
    cfg.write_text(cfg.read_text() + '[collect]\ninterval = "1h"\n')
    print(f"store: {files * si.LINES:,} series, first pass {sb.first:.1f} s", flush=True)
    return time.time()


def add_one_series(root: Path, now_ms: int) -> None:
    """``latency{host="web1"}`` every minute for 8 days up to ``now_ms``, rolled up as an
    import is (the first pass's compaction has moved every tier's watermark past them)."""
    from signalbox.clock import FrozenClock
    from signalbox.config import load_settings
    from signalbox.metrics.samples import Sample
    from signalbox.runtime import open_metric_store

    settings = load_settings(str(root / "signalbox.toml"), environ={})
    store = open_metric_store(settings, clock=FrozenClock(now_ms / 1000))
    try:
        store.write(
            [
                Sample(
                    "latency", (("host", "web1"),), float(i % 97), now_ms - 8 * DAY_MS + i * 60_000
                )
                for i in range(8 * 1440)
            ],
            now_ms,
        )
        store.rebuild_rollups(now_ms - 8 * DAY_MS - 3_600_000, now_ms - 3_600_000)
    finally:
        store.close()


def settle(root: Path, at_s: float) -> None:
    """Every bucket the store's data closes rolled up now (a clock 2 h ahead), so the
    ``serve`` started next has no backlog of rollups to build beside the timed queries (a
    store written continuously has none either)."""
    from signalbox.clock import FrozenClock
    from signalbox.config import load_settings
    from signalbox.runtime import open_metric_store

    settings = load_settings(str(root / "signalbox.toml"), environ={})
    store = open_metric_store(settings, clock=FrozenClock(at_s + 7200))
    try:
        store.compact(int((at_s + 7200) * 1000))
    finally:
        store.close()


def get(url: str) -> tuple[float, Any]:
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=600) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{url}: {e.code} {e.read()[:500]!r}") from e
    took = time.perf_counter() - t
    return took, json.loads(body)


def check_sum(answer: Any, files: int) -> None:
    res = answer["data"]["result"]
    assert answer["status"] == "success" and len(res) == min(SHARDS, files), answer
    total = sum(float(r["value"][1]) for r in res)
    want = sum((f * 7 + j * 13) % 1000 + 0.5 for f in range(files) for j in range(si.LINES))
    assert abs(total - want) < 1e-6 * want, (total, want)


def serve_round(
    root: Path, env: dict[str, str], at_s: float, files: int, wait_s: float, one: bool, r: int
) -> dict[str, float]:
    """One ``serve``: (ready: start to "serving on", first, warm median, 8d series)."""
    port = si.free_port()
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    log = open(root / f"serve-{r}.log", "w+b")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [si.SIGNALBOX, "serve", "--port", str(port)],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=log,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if b"signalbox serving on" in line:
                break
        else:
            log.seek(0)
            raise RuntimeError(f"serve exited: {log.read().decode(errors='replace')[-2000:]}")
        out["ready"] = time.perf_counter() - t0
        if wait_s:
            time.sleep(wait_s)
        base = f"http://127.0.0.1:{port}/api/v1/"

        def query(at: float) -> float:
            q = urllib.parse.urlencode({"query": QUERY, "time": f"{at:.3f}"})
            took, answer = get(f"{base}query?{q}")
            check_sum(answer, files)
            return took

        out["first"] = query(at_s)
        out["since_start"] = time.perf_counter() - t0
        out["warm"] = statistics.median(query(at_s + 0.001 * (i + 1)) for i in range(2))
        if one:
            end = int(at_s)
            q = urllib.parse.urlencode(
                {"query": 'latency{host="web1"}', "start": end - 8 * 86400, "end": end, "step": 60}
            )
            times = []
            for i in range(4):
                qi = q.replace(f"end={end}", f"end={end - i * 60}")  # a new key: evaluated
                took, answer = get(f"{base}query_range?{qi}")
                pts = len(answer["data"]["result"][0]["values"])
                assert pts >= 8 * 1440 * 0.99, pts  # the last minutes of the 8 days may be missing
                times.append(took)
            out["series_8d"] = statistics.median(times[1:])
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--files", type=int, default=2000, help="500 series each (2000: 1M)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wait", type=float, default=0.0, help="seconds from ready to the query")
    ap.add_argument("--one-series", action="store_true", help="also one series over 8 days")
    ap.add_argument("--baseline-src", help="another checkout's src: its serve, same rounds")
    ap.add_argument("--pg", help="PostgreSQL base URL: the store there (a new schema)")
    ap.add_argument("--keep", help="build the store here and keep it (else a temp dir)")
    a = ap.parse_args()
    with contextlib.ExitStack() as st:
        root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="cold-query-"))
        if not a.keep:
            st.callback(shutil.rmtree, root, True)
        store = st.enter_context(si.pg_schema(a.pg)) if a.pg else None
        done = root / "sb" / "built-at"
        if done.exists():  # --keep: a store built earlier, reused as it is
            at_s = float(done.read_text())
        else:
            at_s = build(root / "sb", a.files, store)
            if a.one_series:
                add_one_series(root / "sb", int(at_s * 1000))
            settle(root / "sb", at_s)
            done.write_text(repr(at_s))
        kinds = {"ours": dict(si._ENV)}
        if a.baseline_src:
            kinds["baseline"] = {**si._ENV, "PYTHONPATH": a.baseline_src}
        got: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        for r in range(a.rounds):
            names = list(kinds)
            for k in names[r % len(names) :] + names[: r % len(names)]:
                res = serve_round(root / "sb", kinds[k], at_s, a.files, a.wait, a.one_series, r)
                got[k].append(res)
                print(
                    f"  round {r} {k:<8} "
                    + "  ".join(f"{n} {v * 1000:.0f} ms" for n, v in res.items()),
                    flush=True,
                )
        print(
            f"{a.files * si.LINES:,} series, {'PostgreSQL' if a.pg else 'SQLite'}, "
            f"{a.rounds} rounds, query {a.wait:g} s after ready, load {os.getloadavg()}:"
        )
        for k, rs in got.items():
            print(f" {k}: " + ", ".join(
                f"{n} median {statistics.median(x[n] for x in rs) * 1000:.0f} ms"
                for n in rs[0]
            ))  # fmt: skip
        if a.baseline_src:
            for n in got["ours"][0]:
                ratio = statistics.median(
                    o[n] / b[n] for o, b in zip(got["ours"], got["baseline"], strict=True)
                )
                print(f" ours / baseline, {n}: {ratio:.2f}x (median of per-round ratios)")


if __name__ == "__main__":
    main()
