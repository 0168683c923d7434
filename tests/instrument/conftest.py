"""A middleware core writing to a temporary access log, with its metrics in a client of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from signalbox.instrument.accesslog import AccessRecord, parse_line
from signalbox.instrument.core import Instrument
from signalbox.instrument.metrics import RequestMetrics
from signalbox.metrics.client import Client

SECRET = b"test-secret"


class Harness:
    """A core, its log file, and the metrics client its request metrics go to."""

    def __init__(self, tmp: Path, fmt: str) -> None:
        self.log = tmp / "access.log"
        (tmp / "spool").mkdir(parents=True)
        self.client = Client(tmp / "spool", background=False, pid_label=None, prog="t")
        self.metrics = RequestMetrics(self.client, background=False)
        self.core = Instrument(
            access_log=self.log,
            format=fmt,
            host="web1",
            secret_notes=("api_key",),
            secret=SECRET,
            metrics=self.metrics,
            request_id_header="X-Request-ID",
            trust_request_id=True,
            max_note_chars=200,
            buffer_lines=1,
            flush_interval=0.2,
        )

    def lines(self) -> list[str]:
        if not self.log.exists():
            return []
        return self.log.read_text(encoding="utf-8").splitlines()

    def records(self) -> list[AccessRecord]:
        return [parse_line(line) for line in self.lines()]

    def metrics_text(self) -> str:
        self.metrics.push()
        return self.client.render()

    def close(self) -> None:
        self.core.close()
        self.client.close()


@pytest.fixture(params=["combined", "json"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path, request.param)
    yield h
    h.close()


@pytest.fixture
def make_harness(tmp_path: Path) -> Iterator[Callable[[str], Harness]]:
    made: list[Harness] = []

    def make(fmt: str = "combined") -> Harness:
        h = Harness(tmp_path / f"h{len(made)}", fmt)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()
