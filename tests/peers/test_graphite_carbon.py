"""Forwarding to a real carbon-cache (Debian ``graphite-carbon``): the values of each pass land
in its whisper files under the documented names, tags and dotted, hostile label values
escaped into names carbon stores as they are."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.clock import FrozenClock
from signalbox.config import settings_from_dict
from signalbox.metrics.collect import Collector
from signalbox.metrics.forward import Forwarders, start_forwarding
from signalbox.metrics.forward.graphite import graphite_path
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
from tests.peers.peers import free_port

pytestmark = pytest.mark.peer("carbon-cache")

HOSTILE = ["a b", "semi;colon", "~tilde", "slash/dot.", "100%", "naïve ☃", 'q"<&>']


class Carbon:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.whisper = root / "whisper"
        self.port = free_port()
        conf = root / "conf"
        conf.mkdir(parents=True)
        (conf / "carbon.conf").write_text(
            "[cache]\n"
            f"STORAGE_DIR = {root}\nLOCAL_DATA_DIR = {self.whisper}\n"
            f"WHITELISTS_DIR = {root}/lists\nLOG_DIR = {root}/log\nPID_DIR = {root}\n"
            "ENABLE_LOGROTATION = False\nUSER =\nMAX_CACHE_SIZE = inf\n"
            "MAX_UPDATES_PER_SECOND = 100000\nMAX_CREATES_PER_MINUTE = inf\n"
            f"LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {self.port}\n"
            "ENABLE_UDP_LISTENER = False\nPICKLE_RECEIVER_INTERFACE = 127.0.0.1\n"
            f"PICKLE_RECEIVER_PORT = {free_port()}\nCACHE_QUERY_INTERFACE = 127.0.0.1\n"
            f"CACHE_QUERY_PORT = {free_port()}\nLOG_LISTENER_CONNECTIONS = False\n"
            "ENABLE_TAGS = False\nWHISPER_AUTOFLUSH = True\n"
        )
        (conf / "storage-schemas.conf").write_text("[all]\npattern = .*\nretentions = 1s:1h\n")
        exe = shutil.which("carbon-cache")
        assert exe is not None
        self.log = (root / "carbon.out").open("wb")
        self.proc = subprocess.Popen(
            [exe, f"--config={conf / 'carbon.conf'}", "--nodaemon", "start"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def file_of(self, path: str) -> Path:
        """The whisper file carbon writes for a metric path (tagged: the sha256 of the path
        with its tags sorted, carbon's TAG_HASH_FILENAMES default)."""
        if ";" in path:
            name, *tags = path.split(";")
            normal = name + "".join(f";{t}" for t in sorted(tags))
            digest = hashlib.sha256(normal.encode()).hexdigest()
            return self.whisper / "_tagged" / digest[:3] / digest[3:6] / f"{digest}.wsp"
        return self.whisper.joinpath(*path.split(".")).with_suffix(".wsp")

    def value(self, path: str, ts: int, timeout: float = 15.0) -> float:
        """The value carbon stored for ``path`` at second ``ts`` (waits for its writer)."""
        import whisper

        f = self.file_of(path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f.exists():
                (start, _, step), values = whisper.fetch(str(f), ts - 1, ts)
                for i, v in enumerate(values):
                    if start + i * step == ts and v is not None:
                        return float(v)
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        listing = sorted(str(p.relative_to(self.whisper)) for p in self.whisper.rglob("*.wsp"))
        raise AssertionError(f"no value of {path} at {ts} in {f}; files: {listing[:20]}")

    def points(self, path: str, start: int, end: int, timeout: float = 15.0) -> list[float]:
        """The values carbon stored for ``path`` from second ``start`` to ``end``."""
        import whisper

        f = self.file_of(path)
        deadline = time.monotonic() + timeout
        got: list[float] = []
        while time.monotonic() < deadline:
            if f.exists():
                _, values = whisper.fetch(str(f), start - 1, end)
                got = [float(v) for v in values if v is not None]
                if got:
                    return got
            time.sleep(0.1)
        return got

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def carbon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Carbon]:
    c = Carbon(tmp_path_factory.mktemp("carbon"))
    try:
        deadline = time.monotonic() + 30
        import socket

        while True:
            try:
                socket.create_connection(("127.0.0.1", c.port), timeout=1).close()
                break
            except OSError:
                if c.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        (c.root / "carbon.out").read_text(errors="replace")
                    ) from None
                time.sleep(0.1)
        yield c
    finally:
        c.close()


def forwarding(
    tmp_path: Path, carbon: Carbon, **graphite: str
) -> tuple[Collector, Forwarders, FrozenClock]:
    settings = settings_from_dict(
        {
            "host": "web1",
            "forward": {"graphite": {"address": f"127.0.0.1:{carbon.port}", **graphite}},
        },
        source="test.toml",
        base_dir=tmp_path,
    )
    fwd = start_forwarding(settings)
    assert fwd is not None
    clock = FrozenClock(float(int(time.time())))
    store = SQLMetricStore(open_database(f"sqlite:///{tmp_path / 'db.sqlite'}"), clock=clock)
    collector = Collector(
        fwd.wrap(store), spool_dir=tmp_path / "spool", host="web1", clock=clock, sources=[fwd]
    )
    return collector, fwd, clock


def spool_file(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / "spool").mkdir(exist_ok=True)
    (tmp_path / "spool" / name).write_text(text)


def test_each_pass_lands_in_whisper_under_its_tags(tmp_path: Path, carbon: Carbon) -> None:
    collector, fwd, clock = forwarding(tmp_path, carbon, prefix="sb")
    stamps = []
    try:
        for i in range(2):
            spool_file(tmp_path, "jobs.metrics", f'jobs_waiting{{queue="q1"}}={i + 3}\nlag=0.25\n')
            collector.run_once()
            stamps.append(int(clock.now()))
            clock.advance(1)
            sender = fwd.forwarders[0]
            deadline = time.monotonic() + 5
            while sender.sent == 0 and time.monotonic() < deadline:  # passes are seconds apart
                time.sleep(0.02)
    finally:
        fwd.close()
    path = graphite_path("jobs_waiting", (("host", "web1"), ("queue", "q1")), prefix="sb")
    assert path == "sb.jobs_waiting;host=web1;queue=q1"
    assert [carbon.value(path, ts) for ts in stamps] == [3.0, 4.0]
    assert carbon.value("sb.lag;host=web1", stamps[1]) == 0.25
    # the forwarder's own counters went too: at the second pass, the first pass's samples
    sent = carbon.value("sb.signalbox_forward_sent_total;host=web1;peer=graphite", stamps[1])
    assert sent >= 2
    assert fwd.forwarders[0].dropped == 0


def test_hostile_label_values_are_escaped_into_distinct_series(
    tmp_path: Path, carbon: Carbon
) -> None:
    from signalbox.metrics.samples import escape_label_value

    text = "".join(
        f'odd{{v="{escape_label_value(v)}"}}={i}\n' for i, v in enumerate(HOSTILE, start=1)
    )
    for naming in ("tags", "dotted"):
        collector, fwd, clock = forwarding(tmp_path / naming, carbon, naming=naming, prefix=naming)
        try:
            spool_file(tmp_path / naming, "odd.metrics", text)
            collector.run_once()
        finally:
            fwd.close()
        ts = int(clock.now())
        paths = [
            graphite_path("odd", (("host", "web1"), ("v", v)), prefix=naming, naming=naming)
            for v in HOSTILE
        ]
        assert len(set(paths)) == len(HOSTILE)
        assert all(p.isascii() and " " not in p for p in paths)
        assert [carbon.value(p, ts) for p in paths] == [float(i) for i in range(1, 8)]
    assert (carbon.whisper / "dotted" / "odd" / "host" / "web1" / "v" / "a%20b.wsp").exists()


def test_collect_once_forwards_its_pass_before_it_exits(tmp_path: Path, carbon: Carbon) -> None:
    from tests.cli.helpers import run

    (tmp_path / "signalbox.toml").write_text(
        'host = "cron1"\n[collect]\nspool_dir = "spool"\n'
        f'[forward.graphite]\naddress = "127.0.0.1:{carbon.port}"\nprefix = "cron"\n'
    )
    spool_file(tmp_path, "nightly.metrics", "backup_bytes=123456789\n")
    before = int(time.time())
    r = run("collect", "--once", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    after = int(time.time())
    assert carbon.points("cron.backup_bytes;host=cron1", before, after) == [123456789.0]
