"""Reading the logs back: filters, pages, traces across files, rotated and broken files."""

from __future__ import annotations

import gzip
import logging
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.config import settings_from_dict
from signalbox.exceptions import UsageError
from signalbox.instrument.accesslog import AccessRecord, format_combined, format_json, parse_line
from signalbox.instrument.context import RequestContext, enter, leave
from signalbox.instrument.logfiles import (
    MAX_LINE_BYTES,
    Malformed,
    access_records,
    classify,
    read_lines,
    search,
)
from signalbox.instrument.logline import (
    line_time,
    mentions,
    printable,
    use_request_format,
)
from signalbox.instrument.logscan import page, trace
from signalbox.instrument.logsources import LogFiles, log_files, with_rotated
from signalbox.instrument.search import (
    RequestQuery,
    format_cursor,
    parse_cursor,
    parse_status,
    parse_time_bound,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
FP = "fp:0123456789abcdef"


def rec(i: int, **kw: object) -> AccessRecord:
    fields: dict[str, object] = {
        "time": T0 + timedelta(seconds=i, microseconds=123),
        "host": "www1",
        "client": "10.0.0.1",
        "method": "GET",
        "path": f"/photos/{i}",
        "protocol": "HTTP/1.1",
        "status": 200,
        "bytes": 10,
        "duration_us": 100,
        "request_id": f"r{i}",
        "route": "/photos/{n}",
        "notes": {"user_id": "5555", "api_key": FP},
    }
    fields.update(kw)
    return AccessRecord(**fields)  # type: ignore[arg-type]


def write(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


class Bad(list[Malformed]):
    def __call__(self, m: Malformed) -> None:
        self.append(m)


# -- the query ------------------------------------------------------------------------------


def test_status_and_times_parse_and_bad_ones_name_the_option() -> None:
    assert parse_status("5xx") == (500, 599)
    assert parse_status("404") == (404, 404)
    with pytest.raises(UsageError, match=r"--status '6xx'"):
        parse_status("6xx")
    assert parse_time_bound("90m", T0) == T0 - timedelta(minutes=90)
    assert parse_time_bound("2024-05-01T10:00:00Z", T0) == T0 - timedelta(hours=2)
    assert parse_time_bound("2024-05-01T12:00:00+02:00", T0) == T0 - timedelta(hours=2)
    with pytest.raises(UsageError, match="since 'yesterday'"):
        parse_time_bound("yesterday", T0, "since")
    with pytest.raises(UsageError, match="--api-key-fp 'sk_live_1'"):
        RequestQuery.build(api_key_fp="sk_live_1", now=T0, names={"api_key_fp": "--api-key-fp"})
    with pytest.raises(UsageError, match="until must be after since"):
        RequestQuery.build(since="1h", until="2h", now=T0)
    with pytest.raises(UsageError, match="method"):
        RequestQuery.build(method="GET /x", now=T0)


def test_query_matches_every_filter_given() -> None:
    r = rec(1, method="POST", status=503, notes={"user_id": "7", "partner_key": FP})
    q = RequestQuery.build(user="7", method="post", status="5xx", now=T0 + timedelta(hours=1),
                           since="1h", api_key_fp=FP, secret_notes=("api_key", "partner_key"))  # fmt: skip
    assert q.matches(r)
    assert not RequestQuery(user="5555").matches(r)
    assert not RequestQuery(status=(400, 499)).matches(r)
    assert not RequestQuery(api_key_fp=FP).matches(r)  # partner_key is not a secret note here
    assert not RequestQuery(until=r.time).matches(r)  # until is exclusive, since inclusive
    assert RequestQuery(since=r.time).matches(r)


def test_cursor_round_trips_and_garbage_is_refused() -> None:
    assert parse_cursor(format_cursor((1714564800000000, "0123456789abcdef"))) == (
        1714564800000000,
        "0123456789abcdef",
    )
    assert parse_cursor("") is None
    with pytest.raises(UsageError, match="'after'"):
        parse_cursor("12;DROP")


# -- reading files ----------------------------------------------------------------------------


def test_gzip_is_read_by_its_bytes_and_bad_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    good = [format_combined(rec(i)) for i in range(3)]
    write(tmp_path / "access.log.2.gz", good[:1], gz=True)
    write(tmp_path / "oddly-named", good[1:2], gz=True)
    raw = good[2].encode() + b"\r\n\xff\xfe not utf-8\n\n" + b"x" * (MAX_LINE_BYTES + 10) + b"\n"
    (tmp_path / "access.log").write_bytes(raw + good[0].encode() + b"\nnot a line\n")
    bad = Bad()
    paths = [tmp_path / "access.log.2.gz", tmp_path / "oddly-named", tmp_path / "access.log"]
    found = list(access_records(paths, bad))
    assert [f.record.request_id for f in found] == ["r0", "r1", "r2", "r0"]
    assert [(f.file.name, f.line) for f in found][-2:] == [("access.log", 1), ("access.log", 5)]
    log = str(tmp_path / "access.log")
    assert [(m.file, m.line) for m in bad] == [(log, 2), (log, 4), (log, 6)]
    assert "not UTF-8" in bad[0].why and "longer than" in bad[1].why
    assert "not an access-log line" in bad[2].why


def test_a_truncated_gzip_file_keeps_its_good_lines_and_says_where_it_broke(
    tmp_path: Path,
) -> None:
    lines = [format_json(rec(i)) for i in range(200)]
    data = gzip.compress("".join(x + "\n" for x in lines).encode())
    (tmp_path / "a.log.1.gz").write_bytes(data[: len(data) // 2])
    bad = Bad()
    got = list(read_lines(tmp_path / "a.log.1.gz", bad))
    assert 0 < len(got) < 200 and len(bad) == 1
    assert "ends or breaks" in bad[0].why and bad[0].line == len(got) + 1
    assert [parse_line(t).request_id for _, t in got[:3]] == ["r0", "r1", "r2"]


def test_a_note_holding_a_forged_line_is_one_request_not_two(tmp_path: Path) -> None:
    forged = (
        '\n6.6.6.6 - 9999 [01/May/2024:12:00:09 +0000] "DELETE /admin HTTP/1.1" 500 - "-" "-" '
        'ts=1714564809.000000 request_id="forged" route="" duration_us=1'
    )
    lines = [
        format_combined(rec(1, notes={"user_id": "5555", "comment": forged})),
        format_json(rec(2, notes={"user_id": "5555", "comment": forged.replace("forged", "f2")})),
    ]
    path = write(tmp_path / "access.log", lines)
    assert len(path.read_text().splitlines()) == 2
    bad = Bad()
    for rid in ("forged", "f2"):
        assert list(search([path], RequestQuery(request_id=rid), bad)) == []
    assert list(search([path], RequestQuery(user="9999"), bad)) == []
    assert list(search([path], RequestQuery(method="DELETE"), bad)) == []
    both = list(search([path], RequestQuery(user="5555"), bad))
    assert [f.record.notes["comment"] for f in both] == [forged, forged.replace("forged", "f2")]
    assert bad == []


def test_pages_go_newest_first_and_a_cursor_survives_rotation(tmp_path: Path) -> None:
    log = write(tmp_path / "access.log", [format_combined(rec(i)) for i in range(7)])
    q = RequestQuery(user="5555")
    first = page([log], q, limit=3)
    assert [f.record.request_id for f in first.found] == ["r6", "r5", "r4"]
    assert first.next_after is not None
    # logrotate: the file is compressed to access.log.1.gz, a new one starts
    (tmp_path / "access.log.1.gz").write_bytes(gzip.compress(log.read_bytes()))
    write(log, [format_json(rec(9))])
    files = with_rotated(log)
    assert [p.name for p in files] == ["access.log.1.gz", "access.log"]
    second = page(files, q, limit=3, after=first.next_after)
    assert [f.record.request_id for f in second.found] == ["r3", "r2", "r1"]
    last = page(files, q, limit=3, after=second.next_after)
    assert [f.record.request_id for f in last.found] == ["r0"] and last.next_after is None
    assert [f.record.request_id for f in page(files, q, limit=1).found] == ["r9"]


# -- application and worker logs --------------------------------------------------------------


def test_markers_find_the_id_and_never_a_longer_one() -> None:
    rid = "4bf92f3577b34da6"
    assert mentions(f"2024-05-01 12:00:00,001 INFO app [{rid}]: saved", rid)
    assert mentions(f"ts=1 request_id={rid} event=saved", rid)
    assert mentions(f'request_id="{rid}" x', rid)
    assert mentions(f'{{"event": "saved", "request_id": "{rid}"}}', rid)
    assert not mentions(f"[{rid}0]: other request", rid)
    assert not mentions(f"request_id={rid}0", rid)
    assert not mentions(f"photo {rid} resized", rid)  # a bare mention is no marker


def test_line_times_in_the_formats_loggers_write() -> None:
    utc = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert line_time("2024-05-01T12:00:00.123Z INFO x") == utc
    assert line_time("2024-05-01 14:00:00,123 INFO x", timezone(timedelta(hours=2))) == utc
    assert line_time("2024-05-01T14:00:00.123+0200 x") == utc
    assert line_time('{"event": "x", "timestamp": "2024-05-01T12:00:00.123Z"}') == utc
    assert line_time("  File 'app.py', line 3") is None
    assert printable("a\x1b[31mred\u2028x") == "a\\x1b[31mred\\u2028x"


def test_trace_merges_access_application_and_worker_lines_in_time_order(tmp_path: Path) -> None:
    rid = "abc123"
    access = write(tmp_path / "access.log", [format_combined(rec(1, request_id=rid)),
                                             format_combined(rec(2))])  # fmt: skip
    app = write(tmp_path / "app.log", [
        "2024-05-01T12:00:01.500000Z ERROR app [abc123]: resize failed",
        "Traceback (most recent call last):",
        "  ValueError: bad",
        "2024-05-01T12:00:01.600000Z INFO app [r2]: other request",
        "  not ours",
        "2024-05-01T12:00:01.000200Z INFO app [abc123]: started",
    ])  # fmt: skip
    worker = write(tmp_path / "worker.log", [
        '{"timestamp": "2024-05-01T12:00:05Z", "event": "job done", "request_id": "abc123"}',
        '{"timestamp": "2024-05-01T12:00:04Z", "event": "job", "request_id": "abc1234"}',
    ])  # fmt: skip
    files = classify([worker, app, access])
    assert files.access == (access,) and files.other == (worker, app)
    got = trace(files, rid)
    assert [(t.file.name, t.line) for t in got] == [
        ("access.log", 1),
        ("app.log", 6),
        ("app.log", 1),
        ("app.log", 2),
        ("app.log", 3),
        ("worker.log", 1),
    ]
    assert got[0].record is not None and got[3].continued and not got[1].continued


def test_serve_and_worker_lines_carry_the_request_id_and_trace_finds_them(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    logger = logging.getLogger("test.logs.format")
    logger.propagate = False
    handler = logging.FileHandler(path)
    logger.addHandler(handler)
    try:
        use_request_format(logger)
        logger.warning("outside")
        token = enter(RequestContext("req-42"))
        try:
            logger.warning("inside, with \x1b[2J in it")
        finally:
            leave(token)
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = path.read_text().splitlines()
    assert "Z [-] WARNING test.logs.format: outside" in lines[0] and "[req-42] WARNING" in lines[1]
    t = line_time(lines[1])
    assert t is not None and abs((datetime.now(UTC) - t).total_seconds()) < 60
    got = trace(LogFiles((), (path,), ()), "req-42")
    assert [x.line for x in got] == [2]


def test_configured_files_come_with_their_rotated_siblings(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("access.log", "access.log.1", "access.log.2.gz", "access.log.10.gz",
                 "access.log.bak"):  # fmt: skip
        (data / name).write_text("x\n")
    (tmp_path / "w-1.log").write_text("x\n")
    (tmp_path / "w-1.log.1").write_text("x\n")
    (tmp_path / "w-2.log").write_text("x\n")
    settings = settings_from_dict(
        {"data_dir": "data", "logs": {"files": ["w-*.log", "missing.log"]}},
        source="t.toml",
        base_dir=tmp_path,
        environ={},
    )
    files = log_files(settings)
    assert [p.name for p in files.access] == [
        "access.log.10.gz",
        "access.log.2.gz",
        "access.log.1",
        "access.log",
    ]
    assert [p.name for p in files.other] == ["w-1.log.1", "w-1.log", "w-2.log"]
    assert files.missing == (str(tmp_path / "missing.log"),)
    assert os.path.isabs(files.missing[0])


def test_a_file_that_cannot_be_read_is_reported_and_the_others_still_are(tmp_path: Path) -> None:
    good = write(tmp_path / "access.log", [format_combined(rec(1))])
    (tmp_path / "gone.log").mkdir()  # a directory where a file was named: open fails
    bad = Bad()
    found = list(access_records([tmp_path / "gone.log", tmp_path / "vanished.log", good], bad))
    assert [f.record.request_id for f in found] == ["r1"]
    assert [(Path(m.file).name, m.line) for m in bad] == [("gone.log", 0), ("vanished.log", 0)]
    assert all("cannot read the file" in m.why for m in bad)


def test_without_a_logs_setting_the_data_dirs_logs_folder_is_read_quietly(tmp_path: Path) -> None:
    settings = settings_from_dict({}, source="t.toml", base_dir=tmp_path, environ={})
    assert log_files(settings).missing == (str(tmp_path / ".signalbox" / "access.log"),)
    (tmp_path / ".signalbox" / "logs").mkdir(parents=True)
    write(tmp_path / ".signalbox" / "logs" / "app.log", ["x"])
    assert [p.name for p in log_files(settings).other] == ["app.log"]
    none = settings_from_dict({"logs": {"files": []}}, source="t", base_dir=tmp_path, environ={})
    assert log_files(none).other == ()
    with pytest.raises(Exception, match=r"logs\.files\[0\]"):
        settings_from_dict({"logs": {"files": [" "]}}, source="t", base_dir=tmp_path, environ={})


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(100, 599),
    method=st.sampled_from(["GET", "get", "POST", "Delete", "PATCH"]),
    note=st.one_of(_TEXT, st.sampled_from(['" 503 x', '"status":500', '"GET /', "5xx"])),
    user=st.one_of(_TEXT, st.sampled_from(["5555", "u 1"])),
    fmt=st.sampled_from([format_combined, format_json]),
    want=st.tuples(
        st.sampled_from([None, (500, 599), (404, 404), (200, 299)]),
        st.sampled_from([None, "GET", "POST", "DELETE"]),
        st.sampled_from([None, "5555", "u 1"]),
    ),
)
def test_the_quick_test_never_drops_a_matching_line(
    status: int,
    method: str,
    note: str,
    user: str,
    fmt: object,
    want: tuple,  # type: ignore[type-arg]
) -> None:
    r = rec(1, status=status, method=method, notes={"user_id": user, "msg": note})
    line = fmt(r)  # type: ignore[operator]
    parsed = parse_line(line)
    q = RequestQuery(status=want[0], method=want[1], user=want[2])
    if q.matches(parsed):
        assert q.might_match(line), line
