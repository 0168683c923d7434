"""``serve --demo`` as a user meets it: a real process, driven from a second shell."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from signalbox.demo.workspace import MARKER, leftovers
from tests.cli.helpers import SIGNALBOX, free_port, run

DEMO_NAMES = [
    "demo_db_overloaded",
    "demo_image_processing_slow",
    "demo_photo_app_alive",
    "demo_resize_queue_high",
]


class Demo:
    """``signalbox serve --demo`` in ``folder`` on free ports, output kept in files."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.folder = folder
        self.out = folder.parent / f"{folder.name}-serve-{time.monotonic_ns()}.out"
        self.err = self.out.with_suffix(".err")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
        env["SIGNALBOX_HOST"] = "demo1"
        cmd = [
            SIGNALBOX,
            *args,
            "serve",
            "--demo",
            "--port",
            str(free_port()),
            "--statsd",
            f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
        ]
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out, stderr=err)
        self.wait_for("signalbox serving on")

    def output(self) -> str:
        return self.out.read_text()

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(
                    f"demo did not print {text!r}:\n{self.output()}\n{self.err.read_text()}"
                )
            time.sleep(0.1)

    def spool_files(self, spool: Path) -> list[str]:
        """Wait for the demo's own spool file (the client writes within a second)."""
        deadline = time.monotonic() + 20
        mine = f"demo-photos-{self.proc.pid}.metrics"
        while mine not in (names := sorted(p.name for p in spool.glob("*.metrics"))):
            assert time.monotonic() < deadline, names
            time.sleep(0.1)
        return names

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Its exit status after ``sig``; killed (and the wait's failure raised) if it has not
        exited within 60 s, so a slow stop fails this test without leaving a running demo
        behind for a later test to trip over."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def test_the_cli_in_the_demo_folder_sees_the_demo_and_it_cleans_up(tmp_path: Path) -> None:
    folder = tmp_path / "try"
    folder.mkdir()
    spool = folder / ".signalbox" / "spool"
    demo = Demo(folder)
    try:
        config = folder / "signalbox.toml"
        assert config.read_text().startswith(MARKER)
        assert "demo: wrote signalbox.toml (there was no config here)" in demo.output()
        assert demo.spool_files(spool) == [f"demo-photos-{demo.proc.pid}.metrics"]

        status = run("monitors", "status", "--json", cwd=folder)
        assert status.returncode == 0, status.stderr
        monitors = json.loads(status.stdout)["monitors"]
        assert sorted(m["name"] for m in monitors) == DEMO_NAMES
        assert all(m["loaded"] for m in monitors)
        assert "not loaded" not in run("monitors", "status", cwd=folder).stdout

        drill = run("monitors", "drill", "demo_resize_queue_high", cwd=folder)
        assert drill.returncode == 0, drill.stdout + drill.stderr
        assert "drill for demo_resize_queue_high sent to demo_log (log)" in drill.stdout
        assert "TEST notification kind=drill" in drill.stdout

        lint = run("monitors", "lint", ".signalbox/demo/monitors/demo.yaml", cwd=folder)
        assert lint.returncode == 0, lint.stdout
        assert "4 valid monitors in 1 file: no errors" in lint.stdout
        assert run("monitors", "lint", cwd=folder).returncode == 0  # its action's flag declared
        flags = run("flags", "list", cwd=folder)
        assert flags.returncode == 0 and "demo_reprocessing  on" in flags.stdout, flags.stdout

        query = run("query", "max(photo_queue_depth)", "--json", cwd=folder)
        assert query.returncode == 0, query.stderr
        assert json.loads(query.stdout)["result"], "the backfilled history answers at once"
    finally:
        code = demo.stop(signal.SIGTERM)
    assert code == 0, demo.err.read_text()
    assert list(spool.glob("*.metrics")) == [], "the demo removes its spool file on exit"


def test_a_restart_after_a_kill_removes_only_the_killed_runs_spool_file(tmp_path: Path) -> None:
    folder = tmp_path / "try"
    folder.mkdir()
    spool = folder / ".signalbox" / "spool"
    first = Demo(folder)
    first.spool_files(spool)
    first.stop(signal.SIGKILL)  # no chance to clean up
    left = spool / f"demo-photos-{first.proc.pid}.metrics"
    assert left.exists()
    users = spool / "photos.metrics"
    users.write_text("image_processing_time=3\n")
    lookalike = spool / "demo-photos-1.metrics"  # pid 1 is alive, and not the demo's content
    lookalike.write_text("# signalbox client: prog=demo-photos pid=1\norders_total=5\n")

    second = Demo(folder)
    try:
        assert f"demo: removed {left.name} from the spool" in second.output()
        assert "demo: running from signalbox.toml, written by an earlier `serve --demo`" in (
            second.output()
        )
        names = second.spool_files(spool)
        assert left.name not in names
        assert {users.name, lookalike.name} <= set(names)
    finally:
        assert second.stop(signal.SIGINT) == 0
    assert not (spool / f"demo-photos-{second.proc.pid}.metrics").exists()
    assert users.exists() and lookalike.exists()


def test_the_demo_leaves_a_users_config_alone_and_says_which_to_pass(tmp_path: Path) -> None:
    assert run("init", ".", cwd=tmp_path).returncode == 0
    config = tmp_path / "signalbox.toml"
    before = config.read_bytes()
    demo = Demo(tmp_path)
    try:
        demo_config = ".signalbox/demo/signalbox.toml"
        assert f"signalbox --config {demo_config} monitors status" in demo.output()
        status = run("--config", demo_config, "monitors", "status", "--json", cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert sorted(m["name"] for m in json.loads(status.stdout)["monitors"]) == DEMO_NAMES
        drill = run("--config", demo_config, "monitors", "drill", DEMO_NAMES[0], cwd=tmp_path)
        assert drill.returncode == 0, drill.stdout + drill.stderr
        assert "sent to demo_log (log)" in drill.stdout
    finally:
        assert demo.stop() == 0
    assert config.read_bytes() == before
    assert not (tmp_path / ".signalbox" / "signalbox.db").exists(), "the user's store untouched"
    assert (tmp_path / ".signalbox" / "demo" / "signalbox.db").exists()


def test_a_config_in_the_demos_place_that_it_did_not_write_is_refused(tmp_path: Path) -> None:
    (tmp_path / "signalbox.toml").write_text('host = "mine"\n')
    theirs = tmp_path / ".signalbox" / "demo" / "signalbox.toml"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("# my own\n")
    r = run("serve", "--demo", "--port", str(free_port()), cwd=tmp_path)
    assert r.returncode == 2
    assert f"{theirs} exists and was not written by `serve --demo`" in r.stderr
    assert theirs.read_text() == "# my own\n"


def _client_file(spool: Path, pid: int, body: str) -> Path:
    path = spool / f"demo-photos-{pid}.metrics"
    path.write_text(f"# signalbox client: prog=demo-photos pid={pid}\n{body}")
    return path


def test_leftovers_are_the_demos_files_of_dead_processes_only(tmp_path: Path) -> None:
    demo_body = 'image_processing_time=2.1\nphoto_queue_depth{queue="resize"}=40\n'
    dead = _client_file(tmp_path, 101, demo_body)
    _client_file(tmp_path, 102, demo_body)  # alive
    _client_file(tmp_path, 103, demo_body + "revenue_total=9\n")  # not only the demo's metrics
    (tmp_path / "demo-photos-104.metrics").write_text(demo_body)  # no client header
    _client_file(tmp_path, 105, demo_body).rename(tmp_path / "demo-photos-106.metrics")  # pid
    (tmp_path / "demo-photos-107.metrics").symlink_to(dead)
    (tmp_path / "photos.metrics").write_text(demo_body)
    assert leftovers(tmp_path, alive=lambda pid: pid == 102) == [dead]
    assert leftovers(tmp_path / "missing", alive=lambda pid: False) == []
