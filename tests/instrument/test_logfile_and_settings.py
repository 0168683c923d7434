"""The access-log file follows logrotate (a moved inode) and SIGHUP, drops lines it cannot
write without raising; [instrument] settings and their errors; the fingerprint key."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox.config import settings_from_dict
from signalbox.exceptions import ConfigError
from signalbox.instrument import logfile
from signalbox.instrument.core import Instrument, load_secret
from signalbox.instrument.logfile import AccessLogFile


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_file_moved_by_logrotate_is_reopened_within_the_check_interval(tmp_path: Path) -> None:
    t = Ticks()
    path = tmp_path / "access.log"
    f = AccessLogFile(path, check_every=1.0, clock=t)
    f.write("one")
    path.rename(tmp_path / "access.log.1")  # logrotate's move
    f.write("two")  # within the interval: still the old file (as logrotate's delaycompress expects)
    t.now = 1.5
    f.write("three")
    f.close()
    assert (tmp_path / "access.log.1").read_text() == "one\ntwo\n"
    assert path.read_text() == "three\n"


@pytest.fixture
def restore_sighup() -> Iterator[None]:
    before = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, before)
    logfile._installed = False


def test_sighup_reopens_at_the_next_write_and_keeps_the_process_alive(
    tmp_path: Path, restore_sighup: None
) -> None:
    path = tmp_path / "access.log"
    f = AccessLogFile(path, check_every=3600)
    assert logfile.reopen_on_sighup()
    f.write("before")
    path.rename(tmp_path / "old.log")
    os.kill(os.getpid(), signal.SIGHUP)
    f.write("after")
    f.close()
    assert (tmp_path / "old.log").read_text() == "before\n"
    assert path.read_text() == "after\n"


def test_an_unwritable_log_drops_lines_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("not a directory")
    f = AccessLogFile(tmp_path / "file" / "access.log")
    with caplog.at_level(logging.ERROR, logger="signalbox"):
        f.write("a")
        f.write("b")
    assert f.dropped == 2
    said = [r.getMessage() for r in caplog.records if "access log" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("1 line(s) dropped so far")


def test_instrument_settings_from_signalbox_toml(tmp_path: Path) -> None:
    s = settings_from_dict(
        {
            "data_dir": "data",
            "instrument": {
                "format": "json",
                "secret_notes": ["api_key", "token"],
                "request_id_header": "X-Correlation-ID",
            },
        },
        source="signalbox.toml",
        base_dir=tmp_path,
    )
    inst = s.instrument
    assert inst.access_log_path(s.data_dir) == tmp_path / "data" / "access.log"
    assert inst.format == "json" and inst.secret_notes == ("api_key", "token")
    core = Instrument(settings=s, secret=b"k", metrics=False)
    assert core.format == "json" and core.request_id_header == "X-Correlation-ID"
    assert core.log_file is not None and core.log_file.path == str(tmp_path / "data/access.log")
    core.close()
    off = settings_from_dict({"instrument": {"access_log": ""}}, source="x", base_dir=tmp_path)
    assert off.instrument.access_log_path(off.data_dir) is None


@pytest.mark.parametrize(
    ("table", "key", "expected"),
    [
        ({"format": "xml"}, "instrument.format", '"combined" or "json"'),
        ({"secret_notes": ["api key"]}, "instrument.secret_notes[0]", "a note name"),
        ({"request_id_header": "X Bad"}, "instrument.request_id_header", "a header name"),
        ({"max_note_chars": 3}, "instrument.max_note_chars", "at least 16"),
        ({"key_env": "1BAD"}, "instrument.key_env", "an environment variable name"),
        ({"metrics": "yes"}, "instrument.metrics", "true or false"),
        ({"acces_log": "x"}, "instrument.acces_log", "a known setting"),
    ],
)
def test_bad_instrument_settings_name_file_and_key(
    tmp_path: Path, table: dict[str, object], key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as e:
        settings_from_dict({"instrument": table}, source="signalbox.toml", base_dir=tmp_path)
    assert e.value.file == "signalbox.toml" and e.value.key == key
    assert expected in e.value.expected


def test_the_fingerprint_key_comes_from_the_environment_else_a_file_made_once(
    tmp_path: Path,
) -> None:
    s = settings_from_dict({}, source="x", base_dir=tmp_path, environ={})
    assert load_secret(s, environ={"SIGNALBOX_LOG_KEY": "from-env"}) == b"from-env"
    first = load_secret(s, environ={})
    key_file = tmp_path / ".signalbox" / "log.key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(first) == 64
    assert load_secret(s, environ={}) == first  # read back, not made again


def _request(core: Instrument, n: int) -> None:
    ctx = core.begin(f"r{n}", None)
    ctx.note(user_id=n)
    core.finish(ctx, 1.7e9, 0.001, 200, 1, _fields, None)


def _fields(source: object) -> tuple[str, str, str, str, str, str, str, str]:
    return ("GET", "/x", "", "HTTP/1.1", "c", "", "", "/x")


def test_buffered_lines_are_written_together_when_the_buffer_fills_or_at_close(
    tmp_path: Path,
) -> None:
    from signalbox.instrument.metrics import RequestMetrics
    from signalbox.metrics.client import Client

    client = Client(tmp_path, background=False, pid_label=None, prog="b")
    log = tmp_path / "a.log"
    core = Instrument(
        access_log=log,
        format="combined",
        host="h",
        secret_notes=(),
        secret=b"k",
        metrics=RequestMetrics(client, background=False),
        request_id_header="X-Request-ID",
        trust_request_id=True,
        max_note_chars=100,
        buffer_lines=3,
        flush_interval=3600,
    )
    for n in range(2):
        _request(core, n)
    assert not log.exists() or log.read_text() == ""
    _request(core, 2)  # fills the buffer: this request writes the three
    assert [line.split(" ")[3] for line in log.read_text().splitlines()] == ["0", "1", "2"]
    _request(core, 3)
    core.close()  # the rest is written at close (and at exit)
    assert len(log.read_text().splitlines()) == 4
    core.metrics.push()  # type: ignore[union-attr]
    assert 'http_requests_total{method="GET",route="/x",status="2xx"}=4' in client.render()
    client.close()


def test_a_buffered_line_is_written_by_the_flusher_within_its_interval(tmp_path: Path) -> None:
    import time

    log = tmp_path / "a.log"
    core = Instrument(
        access_log=log,
        format="json",
        host="h",
        secret_notes=(),
        secret=b"k",
        metrics=False,
        request_id_header="X-Request-ID",
        trust_request_id=True,
        max_note_chars=100,
        buffer_lines=100,
        flush_interval=0.02,
    )
    _request(core, 7)
    deadline = time.monotonic() + 5
    while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert '"request_id":"r7"' in log.read_text()
    core.close()


def test_with_a_config_the_request_metrics_go_to_its_spool_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool dir serve and agent read ([collect] spool_dir), not the default client's
    (which, unconfigured, is .signalbox/spool of the working directory)."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from signalbox.instrument import ASGIMiddleware

    monkeypatch.delenv("SIGNALBOX_SPOOL", raising=False)
    monkeypatch.chdir(tmp_path)
    s = settings_from_dict(
        {"collect": {"spool_dir": "ops/spool"}, "instrument": {"access_log": ""}},
        source="signalbox.toml",
        base_dir=tmp_path,
    )
    spool = tmp_path / "ops" / "spool"
    spool.mkdir(parents=True)
    core = Instrument(settings=s, secret=b"k")
    app = Starlette(routes=[Route("/p", lambda r: PlainTextResponse("ok"))])
    with TestClient(ASGIMiddleware(app, core=core)) as c:
        assert c.get("/p").status_code == 200
    core.close()
    assert core.metrics is not None
    client = core.metrics._client
    assert client is not None
    client.close()  # type: ignore[attr-defined]
    (written,) = spool.glob("http-*.metrics")
    assert 'route="/p",status="2xx"}=1' in written.read_text()
    assert not (tmp_path / ".signalbox").exists()
