"""What the CLI prints, and where: data on stdout in one piece, logs on stderr after it,
a closed pipe is not an error, reading commands never create a store."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from signalbox.cli.base import LazyGroup, logs_after_output
from tests.cli.helpers import SIGNALBOX, free_port, run
from tests.stores import pg_schema_url

MONITOR = """\
- name: resize_slow
  description: Resizes slower than users tolerate.
  query: latency
  critical: "> 8"
  notify: [ops]
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}


def _project(root: Path) -> Path:
    (root / "monitors").mkdir(parents=True)
    (root / "monitors" / "m.yaml").write_text(MONITOR)
    config = root / "signalbox.toml"
    config.write_text('[notifiers.ops]\ntype = "log"\n')
    return config


def _import_history(root: Path, series: int, minutes: int = 60) -> None:
    """``series`` gauges with a sample a minute for the last ``minutes``, via `import`."""
    now = int(time.time())
    lines = ["# TYPE latency gauge"]
    for i in range(series):
        for m in range(minutes):
            lines.append(f'latency{{shard="{i}"}} {i % 10} {now - minutes * 60 + m * 60}')
    lines.append("# EOF")
    (root / "h.om").write_text("\n".join(lines) + "\n")
    r = run("import", "h.om", cwd=root)
    assert r.returncode == 0, r.stderr


def test_query_into_a_pipe_closed_early_exits_0_quietly(tmp_path: Path) -> None:
    _project(tmp_path)
    _import_history(tmp_path, series=200)
    with subprocess.Popen(
        [SIGNALBOX, "query", "latency", "--since", "1h", "--step", "1m"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # what `| head -1` does: the reader goes away, output remains
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    assert code == 0, err
    assert first.startswith(b"latency{")
    assert err.startswith("store: ") and "Traceback" not in err and "Exception" not in err


def test_every_command_of_the_group_treats_a_closed_pipe_as_done() -> None:
    group = LazyGroup("g")

    @group.command("lines")
    def lines() -> None:
        click.echo("first line")
        raise BrokenPipeError(32, "Broken pipe")

    r = CliRunner().invoke(group, ["lines"])
    assert r.exit_code == 0 and r.output == "first line\n"


def test_reading_commands_refuse_a_missing_store_and_create_nothing(tmp_path: Path) -> None:
    for args in (
        ["query", "up"],
        ["monitors", "status"],
        ["monitors", "history", "resize_slow"],
    ):
        r = run(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert f"no store at {tmp_path}/.signalbox/signalbox.db" in r.stderr, args
        assert "--config" in r.stderr and "$SIGNALBOX_CONFIG" in r.stderr, args
        assert f"no signalbox.toml in {tmp_path}" in r.stderr, args
        assert r.stdout == "", args
        assert list(tmp_path.iterdir()) == [], f"{args} created {list(tmp_path.iterdir())}"
    config = _project(tmp_path / "p")
    r = run("query", "up", cwd=tmp_path / "p")
    assert r.returncode == 2 and f"(config: {config})" in r.stderr


def test_reading_commands_name_the_store_they_read_on_stderr(tmp_path: Path) -> None:
    _project(tmp_path)
    _import_history(tmp_path, series=1, minutes=2)
    r = run("query", "latency", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"store: sqlite:///{tmp_path}/.signalbox/signalbox.db\n"
    assert json.loads(r.stdout)["resultType"] == "vector"
    r = run("monitors", "status", "--json", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr.startswith("store: sqlite:///")


@pytest.mark.service("postgresql")
def test_reading_a_postgresql_store_without_signalbox_tables_is_refused(tmp_path: Path) -> None:
    with pg_schema_url() as url:
        (tmp_path / "signalbox.toml").write_text(f'store = "{url}"\n')
        for args in (["query", "up"], ["monitors", "status"]):
            r = run(*args, cwd=tmp_path)
            assert r.returncode == 2, (args, r.stderr)
            assert f"no store at {url} (the database has no signalbox tables)" in r.stderr
        assert run("send", "up=1", cwd=tmp_path).returncode == 0
        assert run("collect", "--once", cwd=tmp_path).returncode == 0
        r = run("query", "up", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stderr == f"store: {url}\n" and r.stdout.startswith("up{")


def test_status_and_history_print_their_table_whole_with_logs_after_it(tmp_path: Path) -> None:
    _project(tmp_path)
    _import_history(tmp_path, series=3, minutes=2)
    (tmp_path / "monitors" / "broken.yaml").write_text("- name: broken\n")  # logs ERRORs
    assert run("monitors", "run", "--once", cwd=tmp_path).returncode == 1
    for args in (["monitors", "status"], ["monitors", "history", "resize_slow"]):
        r = subprocess.run(
            [SIGNALBOX, *args],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one stream, as on a terminal
            text=True,
        )
        assert r.returncode == 0, r.stdout
        lines = r.stdout.splitlines()
        logged = [i for i, line in enumerate(lines) if " ERROR " in line]
        table = [i for i, line in enumerate(lines) if "resize_slow" in line]
        if args[1] == "status":
            assert logged, r.stdout  # the broken file is logged when monitors load
            table.append(next(i for i, line in enumerate(lines) if line.startswith("outbox:")))
        assert table, r.stdout
        assert all(i > max(table) for i in logged), r.stdout


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


def test_logs_after_output_holds_records_until_the_data_is_out() -> None:
    log = logging.getLogger("signalbox.test_output")
    log.setLevel(logging.DEBUG)
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with logs_after_output():
            log.warning("during")
            log.debug("below the handler's level")
            assert handler.seen == []
        assert handler.seen == ["during"]
        log.warning("after")
        assert handler.seen == ["during", "after"]
    finally:
        root.removeHandler(handler)
        log.setLevel(logging.NOTSET)


def test_drill_through_a_log_notifier_shows_the_line_without_verbose(tmp_path: Path) -> None:
    _project(tmp_path)
    r = run("monitors", "drill", "resize_slow", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    head, line = r.stdout.splitlines()
    assert head == "drill for resize_slow sent to ops (log)"
    assert line.startswith("  TEST notification kind=drill drill=true monitor=resize_slow")


def test_agent_says_what_it_collects_where_when_it_starts(tmp_path: Path) -> None:
    udp = free_port(socket.SOCK_DGRAM)
    (tmp_path / "signalbox.toml").write_text(
        f'host = "agent1"\n[collect]\ninterval = "2s"\n[statsd]\nlisten = "127.0.0.1:{udp}"\n'
    )
    proc = subprocess.Popen(
        [SIGNALBOX, "agent"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert line.startswith("signalbox agent collecting every 2s as host 'agent1'"), line
    assert f"spool {tmp_path}/.signalbox/spool" in line
    assert f"StatsD udp://127.0.0.1:{udp}" in line
    assert f"store sqlite:///{tmp_path}/.signalbox/signalbox.db" in line
    assert f"config {tmp_path}/signalbox.toml" in line


def test_serve_statsd_option_is_checked(tmp_path: Path) -> None:
    r = run("serve", "--statsd", "8125", "--port", str(free_port()), cwd=tmp_path)
    assert r.returncode == 2 and "--statsd '8125': expected HOST:PORT" in r.stderr
