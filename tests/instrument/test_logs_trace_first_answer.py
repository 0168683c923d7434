"""A trace whose live access log is bigger than one answer's budget: the first answer holds
the lines of the smaller live logs (read first, whole) and a resume token, never an empty
page while lines lay within the budget; resuming gives the whole trace, each line once,
even when the live logs grow past one another between answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signalbox.exceptions import UsageError
from signalbox.instrument import logblocks
from signalbox.instrument.accesslog import AccessRecord, format_combined
from signalbox.instrument.logscan import Budget, ScanPoint, TraceLine, trace, trace_scan
from signalbox.instrument.logsources import LogFiles

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _access(i: int, rid: str) -> str:
    r = AccessRecord(
        T0 + timedelta(seconds=i),
        host="www1",
        client="10.0.0.1",
        method="GET",
        path=f"/p/{i}",
        protocol="HTTP/1.1",
        status=200,
        bytes=10,
        duration_us=100,
        request_id=rid,
        route="/p/{n}",
    )
    return format_combined(r)


def _logs(tmp_path: Path) -> LogFiles:
    lines = [_access(i, f"r{i}") for i in range(2000)]
    lines[1990] = _access(1990, "rid-9")  # a recent request: near the end of a big log
    (tmp_path / "access.log").write_text("\n".join(lines) + "\n")
    app = [f"2024-05-01T12:33:{i % 60:02d}.000100Z [r{i}] INFO app: {i}" for i in range(40)]
    app[30] = "2024-05-01T12:33:10.000200Z [rid-9] ERROR app: upstream timed out"
    app.insert(31, "Traceback (most recent call last):")
    (tmp_path / "app.log").write_text("\n".join(app) + "\n")
    return LogFiles((tmp_path / "access.log",), (tmp_path / "app.log",), ())


def _key(t: TraceLine) -> tuple[str, int, str]:
    return (t.file.name, t.line, t.text)


def test_the_first_answer_holds_what_the_smaller_live_logs_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", 4096)  # blocks of 4 kB
    files = _logs(tmp_path)
    assert (tmp_path / "access.log").stat().st_size > 50_000
    whole = trace(files, "rid-9")
    assert [t.file.name for t in whole] == ["access.log", "app.log", "app.log"]
    first = trace_scan(files, "rid-9", budget=Budget(bytes=20_000))
    assert first.stopped is not None  # the access log is bigger than the budget
    assert [_key(t) for t in first.lines] == [_key(t) for t in whole[1:]]  # not empty
    seen = [_key(t) for t in first.lines]
    resume: ScanPoint | None = ScanPoint.parse(first.stopped.token())
    grown = False
    while resume is not None:
        if not grown:  # the app log grows past the access log: the order holds
            with (tmp_path / "app.log").open("a") as f:
                f.write("2024-05-01T12:40:00.000000Z [r0] INFO app: more\n" * 12000)
            grown = True
            assert (tmp_path / "app.log").stat().st_size > (tmp_path / "access.log").stat().st_size
        got = trace_scan(files, "rid-9", budget=Budget(bytes=20_000), resume=resume)
        seen += [_key(t) for t in got.lines]
        resume = None if got.stopped is None else ScanPoint.parse(got.stopped.token())
    assert sorted(seen) == sorted(_key(t) for t in whole)
    assert len(seen) == len(set(seen))


def test_a_resume_whose_live_logs_changed_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", 4096)
    files = _logs(tmp_path)
    first = trace_scan(files, "rid-9", budget=Budget(bytes=20_000))
    assert first.stopped is not None and first.stopped.live == (1, 0)  # app.log first
    point = ScanPoint.parse(first.stopped.token())
    assert point == first.stopped
    (tmp_path / "worker.log").write_text("2024-05-01T12:00:00Z [r1] INFO w: x\n")
    more = LogFiles(files.access, (*files.other, tmp_path / "worker.log"), ())
    with pytest.raises(UsageError, match="live logs"):
        trace_scan(more, "rid-9", resume=point)
