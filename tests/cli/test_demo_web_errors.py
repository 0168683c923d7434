"""The demo's site fails some uploads on purpose: uvicorn must not print each one's traceback
into `serve --demo`'s output (they are in the app log and the access log as 500s), while an
exception that is not the demo's simulated one is still logged with its traceback."""

from __future__ import annotations

import contextlib
import http.client
import logging
import time
from pathlib import Path

from signalbox.config import settings_from_dict
from signalbox.demo.webapp import DemoWeb
from signalbox.metrics.client import Client

SEED = 30  # the site's rng, Random(SEED + 1), fails its first upload (0.012 < 0.03); the
# traffic's, Random(SEED), waits 774 s before its first request at this rate


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_simulated_failures_are_500s_without_a_traceback_real_ones_keep_theirs(
    tmp_path: Path,
) -> None:
    settings = settings_from_dict(
        {"data_dir": str(tmp_path / "data")}, source="t", base_dir=tmp_path, environ={}
    )
    (tmp_path / "spool").mkdir()
    client = Client(tmp_path / "spool", prog="demo-test", background=False)
    web = DemoWeb(settings, client, seed=SEED, rate_per_s=0.001)
    web.start()
    stack = contextlib.ExitStack()
    try:
        deadline = time.monotonic() + 10
        while not web.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # uvicorn's own logger does not propagate: listen on it directly
        kept = _Kept()
        errors = logging.getLogger("uvicorn.error")
        errors.addHandler(kept)
        stack.callback(errors.removeHandler, kept)
        port = web.sock.getsockname()[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/upload", body=b"x" * 10, headers={"X-Demo-User": "bob"})
        assert conn.getresponse().status == 500
        conn.close()
        assert "upload of 10 bytes failed" in web.app_log_path.read_text()
        assert kept.records == []
        # any other exception escaping an app is still logged whole
        try:
            raise ValueError("a real bug")
        except ValueError:
            errors.exception("Exception in ASGI application (the test's own)")
        (real,) = kept.records
        assert real.exc_info and isinstance(real.exc_info[1], ValueError)
    finally:
        stack.close()
        web.stop()
        client.close()
