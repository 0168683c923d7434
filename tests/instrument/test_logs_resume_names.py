"""A resume token names its file by its place in the scan and its base name: two logs of
one base name in different folders resume where they stopped (a spurious 400 before), and
no path leaves the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from signalbox.exceptions import UsageError
from signalbox.instrument import logblocks
from signalbox.instrument.logscan import Budget, ScanPoint, trace, trace_scan
from signalbox.instrument.logsources import ConfiguredLogs


def _app_log(folder: Path, tag: str, n: int) -> Path:
    folder.mkdir()
    lines = [f"2024-05-01T12:{i // 60:02d}:{i % 60:02d}.000100Z [r{i}] INFO {tag}: {i}" for i in range(n)]  # fmt: skip
    for i in range(7, n, 50):
        lines[i] = f"2024-05-01T12:{i // 60:02d}:{i % 60:02d}.000200Z [rid-9] INFO {tag}: took {i}"
    path = folder / "app.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_two_logs_of_one_base_name_resume_each_from_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", 1024)  # blocks of 1 kB
    a = _app_log(tmp_path / "web", "web", 300)
    b = _app_log(tmp_path / "worker", "worker", 300)
    files = ConfiguredLogs(other=(a, b)).files()
    whole = trace(files, "rid-9")
    assert len(whole) == 12
    seen: list[tuple[str, int, str]] = []
    resume: ScanPoint | None = None
    tokens: list[str] = []
    while True:
        got = trace_scan(files, "rid-9", budget=Budget(bytes=4000), resume=resume)
        seen += [(str(t.file), t.line, t.text) for t in got.lines]
        if got.stopped is None:
            break
        tokens.append(got.stopped.token())
        resume = ScanPoint.parse(tokens[-1])
    assert sorted(seen) == sorted((str(t.file), t.line, t.text) for t in whole)
    assert len(seen) == len(set(seen))
    in_second = [t for t in tokens if ScanPoint.parse(t).index == 1]
    assert in_second and all(ScanPoint.parse(t).file == "app.log" for t in tokens)
    assert not any(str(tmp_path) in t or "worker" in t or "web" in t for t in tokens)


def test_a_token_whose_place_holds_another_name_or_none_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", 1024)
    a = _app_log(tmp_path / "web", "web", 3000)
    files = ConfiguredLogs(other=(a,)).files()
    got = trace_scan(files, "rid-9", budget=Budget(bytes=1))
    assert got.stopped is not None
    point = ScanPoint.parse(got.stopped.token())
    assert point == got.stopped
    for bad in (ScanPoint("app.log", 0, 0, index=1), ScanPoint("other.log", 0, 0, index=0)):
        with pytest.raises(UsageError, match="no longer among"):
            trace_scan(files, "rid-9", resume=ScanPoint.parse(bad.token()))
    for token in ("0.0.0.-.app.log", "0.0.0.-.x.app.log", "0.0.0.-.1234567.app.log"):
        with pytest.raises(UsageError, match="resume"):
            ScanPoint.parse(token)
