"""Flag changes pushed: a change committed anywhere wakes every listening process at once
(LISTEN/NOTIFY on PostgreSQL, the event table on SQLite), far inside the refresh interval;
a lost listener leaves polling answering and comes back by itself.

The refresh interval is 30 s in these tests: only the push can explain a change seen in
a second or two.
"""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signalbox.flags.cache import FlagCache
from signalbox.flags.model import FlagDecl, FlagState, parse_setting
from signalbox.flags.store import CHANNEL, SQLFlagStore, open_flag_store
from signalbox.scaffold import FLAGS
from signalbox.storage import open_database
from signalbox.storage.notify import APPLICATION_NAME, store_channel
from tests.cli.helpers import StoreProject, run, store_project
from tests.storage.helpers import pg_admin, wait_until
from tests.stores import pg_schema_url

__all__ = ["store_project"]

SLOW_POLL_S = 30.0
PUSHED_WITHIN_S = 3.0  # a notice travels in milliseconds; the rest is a loaded 2-core box

WATCHER = """
import sys, time
from signalbox import flags
from signalbox.config import load_settings

cache = flags.configure(load_settings(sys.argv[1]))
end = time.monotonic() + 20
while not cache.listening and time.monotonic() < end:
    time.sleep(0.01)
print("ready", cache.listening, flush=True)
last = None
end = time.monotonic() + 90
while time.monotonic() < end:
    now = flags.enabled("photo_uploads", "user-1")
    if now != last:
        print(time.time(), now, flush=True)
        last = now
    time.sleep(0.002)
"""


def _lines(proc: subprocess.Popen[str]) -> Iterator[str]:
    assert proc.stdout is not None
    for line in proc.stdout:
        yield line.strip()


def _listeners(channel: str) -> list[int]:
    """The backends listening on ``channel`` (each process's flags listener is one)."""
    rows = pg_admin(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND query = %s",
        (APPLICATION_NAME, f'LISTEN "{channel}"'),
    )
    return [r[0] for r in rows]


def test_a_cli_flip_is_pushed_to_another_process_even_after_its_listener_is_killed(
    store_project: StoreProject,
) -> None:
    p = store_project
    (p.root / "flags").mkdir()
    (p.root / "flags" / "example.yaml").write_text(FLAGS)
    p.configure(f'[flags]\nrefresh = "{int(SLOW_POLL_S)}s"\n')
    run("flags", "list", cwd=p.root)  # the store migrated, as a deployed one is
    store = open_flag_store(p.store_url)
    script = p.root / "watch.py"
    script.write_text(WATCHER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(p.config)], stdout=subprocess.PIPE, text=True
    )

    def flip(value: str, expect: str) -> float:
        r = run("flags", "set", "photo_uploads", value, "--reason", "drill", cwd=p.root)
        assert r.returncode == 0, r.stderr
        at, seen = next(lines).split()
        assert seen == expect
        stored = store.get("photo_uploads")
        assert stored is not None  # stamped just before its commit: the lag is at most this
        return float(at) - stored.updated_ms / 1000

    try:
        lines = _lines(proc)
        assert next(lines) == "ready True"
        assert next(lines).endswith("True")  # the declared default
        lags = [flip("off", "False")]
        if p.backend == "postgresql":
            (pid,) = _listeners(store.channel)
            assert pg_admin("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
            # back by itself after a backoff (0.25-0.5 s), on a new connection
            wait_until(lambda: [x for x in _listeners(store.channel) if x != pid] != [], 15)
            assert pid not in _listeners(store.channel)
        lags.append(flip("on", "True"))
        assert max(lags) < PUSHED_WITHIN_S, lags  # not the 30 s poll
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
        store.close()


UPLOADS = FlagDecl("uploads", "accept uploads", "web", FlagState("on"))


def _cache(url: str, **kw: object) -> FlagCache:
    return FlagCache(
        lambda: open_flag_store(url),
        {"uploads": UPLOADS},
        rng=random.Random(1),
        **kw,  # type: ignore[arg-type]
    )


def test_a_change_by_another_connection_is_pushed_within_the_poll(store_url: str) -> None:
    writer = open_flag_store(store_url)
    c = _cache(store_url, refresh_s=SLOW_POLL_S).start()
    try:
        wait_until(lambda: c.listening, 10)
        for value, expect in (("off", False), ("on", True), ("off", False)):
            t0 = time.monotonic()
            writer.set("uploads", parse_setting(value), by="ops", reason="drill", now_ms=0)
            wait_until(lambda expect=expect: c.enabled("uploads") is expect, PUSHED_WITHIN_S)
            assert time.monotonic() - t0 < PUSHED_WITHIN_S
        got = {s.name: s.value for s in c.samples() if not s.labels}
        assert got["signalbox_flags_listening"] == 1 and got["signalbox_flags_store_up"] == 1
        # a notice's re-read leaves the evaluation counts to the poll: a flip does not make
        # every process write at the same moment
        assert writer.evaluations() == {}
    finally:
        t0 = time.monotonic()
        c.stop()
        assert time.monotonic() - t0 < 2  # the listening thread notices stop() promptly
    evaluated = c.counts()["uploads"]
    assert evaluated > 0 and writer.evaluations()["uploads"][0] == evaluated  # at stop()
    writer.close()
    assert not c.listening


def test_a_change_rolled_back_is_not_announced(store_url: str) -> None:
    db = open_database(store_url)
    writer = SQLFlagStore(db)
    c = _cache(store_url, refresh_s=SLOW_POLL_S).start()
    try:
        wait_until(lambda: c.listening, 10)
        reads = []
        c.publish = lambda samples: reads.append(len(samples))  # once per refresh
        with pytest.raises(RuntimeError), db.transaction():
            writer.set("uploads", parse_setting("off"), by="ops", reason="oops", now_ms=0)
            raise RuntimeError
        time.sleep(0.6)  # three of SQLite's event reads, and a notice's many trips
        assert reads == [] and c.enabled("uploads")
    finally:
        c.stop()
        writer.close()


@pytest.mark.service("postgresql")
def test_a_killed_listener_leaves_polling_answering_and_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pg_schema_url() as url:
        writer = open_flag_store(url)
        # polls every 0.2 s; a lost listener is retried only after 30 s (not in this test)
        c = _cache(url, refresh_s=0.2, listen_backoff_s=(60.0, 60.0)).start()
        try:
            wait_until(lambda: c.listening, 10)
            (pid,) = _listeners(writer.channel)
            with caplog.at_level(logging.WARNING, logger="signalbox.flags"):
                pg_admin("SELECT pg_terminate_backend(%s)", (pid,))
                wait_until(lambda: not c.listening, 10)
                writer.set("uploads", parse_setting("off"), by="ops", reason="r", now_ms=0)
                wait_until(lambda: not c.enabled("uploads"), 10)  # the poll saw it
            assert c.listen_failures == 1 and _listeners(writer.channel) == []
            warned = [r.getMessage() for r in caplog.records]
            assert len(warned) == 1, warned
            assert warned[0].startswith("flag changes not pushed (")
            assert "polling every 0.2s until listening again" in warned[0]
            got = {s.name: s.value for s in c.samples() if not s.labels}
            assert got["signalbox_flags_listening"] == 0
            assert got["signalbox_flags_listen_failures_total"] == 1
            assert got["signalbox_flags_store_up"] == 1
        finally:
            c.stop()
            writer.close()


def test_listening_can_be_turned_off(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    writer = open_flag_store(url)
    c = _cache(url, refresh_s=SLOW_POLL_S, listen=False).start()
    try:
        writer.set("uploads", parse_setting("off"), by="ops", reason="r", now_ms=0)
        time.sleep(0.5)
        assert c.enabled("uploads") and not c.listening  # only the next poll will see it
        assert c.refresh() and not c.enabled("uploads")
    finally:
        c.stop()
        writer.close()


@pytest.mark.service("postgresql")
def test_stores_in_two_schemas_have_channels_of_their_own() -> None:
    """PostgreSQL's channels are the database's: a flip in one schema's store must not
    wake (or be taken for a flip by) the processes of another."""
    with pg_schema_url() as a_url, pg_schema_url() as b_url:
        a, b = open_flag_store(a_url), open_flag_store(b_url)
        try:
            assert a.channel != b.channel
            assert a.channel.startswith(f"{CHANNEL}__sbtest_")
            with b.listener(poll_s=0.01) as heard_by_b, a.listener(poll_s=0.01) as heard_by_a:
                a.set("uploads", parse_setting("off"), by="ops", reason="r", now_ms=0)
                assert [n.payload for n in heard_by_a.wait(10)] == ["uploads"]
                assert heard_by_b.wait(0.3) == []
            assert store_channel(a.db, CHANNEL) == a.channel
        finally:
            a.close()
            b.close()


def test_listen_is_a_setting_on_by_default_and_checked(tmp_path: Path) -> None:
    from signalbox import flags
    from signalbox.config import settings_from_dict
    from signalbox.exceptions import ConfigError

    def settings(**table: object) -> Any:
        return settings_from_dict(
            {"store": f"sqlite:///{tmp_path / 'f.db'}", "flags": table},
            source="signalbox.toml",
            base_dir=tmp_path,
        )

    assert settings().flags.listen is True
    try:
        cache = flags.configure(settings(listen=False, refresh="1h"), metrics=False)
        assert cache.listen is False and not cache.listening
    finally:
        flags.reset()
    with pytest.raises(ConfigError, match=r"flags\.listen: expected true or false, got 'yes'"):
        settings(listen="yes")
