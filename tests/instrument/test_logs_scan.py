"""The block scan behind ``logs grep|trace``: it finds what a line-by-line read finds, reports
the malformed lines its rule says, reads gzip members and broken files, and a page's scan
stops within a budget and resumes where it stopped."""

from __future__ import annotations

import gzip
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.exceptions import ParseError, UsageError
from signalbox.instrument import logblocks
from signalbox.instrument.accesslog import AccessRecord, format_combined, format_json, parse_line
from signalbox.instrument.logfiles import Malformed, read_lines, search
from signalbox.instrument.logscan import Budget, ScanPoint, page, trace, trace_scan
from signalbox.instrument.logsources import LogFiles
from signalbox.instrument.search import RequestQuery

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
FP = "fp:0123456789abcdef"


def rec(i: int, **kw: object) -> AccessRecord:
    fields: dict[str, object] = {
        "time": T0 + timedelta(seconds=i, microseconds=7),
        "host": "www1",
        "client": "10.0.0.1",
        "method": "GET",
        "path": f"/p/{i}",
        "protocol": "HTTP/1.1",
        "status": 200,
        "bytes": 10,
        "duration_us": 100,
        "request_id": f"r{i}",
        "route": "/p/{n}",
        "notes": {"user_id": f"u{i % 7}", "api_key": FP},
    }
    fields.update(kw)
    return AccessRecord(**fields)  # type: ignore[arg-type]


class Bad(list[Malformed]):
    def __call__(self, m: Malformed) -> None:
        self.append(m)


def mixed_log(n: int, seed: int) -> list[str]:
    """Access lines of both formats, hostile notes, and malformed lines of every kind."""
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(n):
        r = rec(
            i,
            status=rng.choice((200, 200, 404, 500, 503)),
            method=rng.choice(("GET", "post", "Delete")),
            notes={"user_id": f"u{i % 7}", "api_key": FP, "msg": rng.choice(("", '" 503 x', "a] ", '"status": 500'))},
        )  # fmt: skip
        roll = rng.random()
        if roll < 0.05:
            out.append("garbage without a status")
        elif roll < 0.08:
            out.append(format_combined(r).replace("/May/", "/Foo/"))  # shaped, bad time
        elif roll < 0.1:
            out.append("")
        else:
            out.append((format_json if rng.random() < 0.3 else format_combined)(r))
    return out


def reference(lines: list[str], q: RequestQuery) -> list[int]:
    """Line numbers a line-by-line read accepts: what the block scan must find."""
    got = []
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            r = parse_line(text)
        except ParseError:
            continue
        if q.matches(r):
            got.append(n)
    return got


QUERIES = [
    RequestQuery(),
    RequestQuery(user="u3"),
    RequestQuery(status=(500, 599)),
    RequestQuery(status=(503, 503)),
    RequestQuery(method="POST"),
    RequestQuery(method="DELETE", status=(400, 499)),
    RequestQuery(request_id="r17"),
    RequestQuery(api_key_fp=FP, user="u1"),
    RequestQuery(since=T0 + timedelta(seconds=100)),
]


@pytest.mark.parametrize("block", [97, 300, 4096, 1 << 20])
@pytest.mark.parametrize("gz", [False, True])
def test_block_scan_finds_what_a_line_by_line_read_finds_and_reports_misshapen_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int, gz: bool
) -> None:
    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", block)  # also the block size
    lines = mixed_log(400, seed=block)
    data = "".join(x + "\n" for x in lines).encode()
    path = tmp_path / "access.log"
    path.write_bytes(gzip.compress(data) if gz else data)
    too_long = {n for n, x in enumerate(lines, 1) if len(x.encode()) > block}
    garbage = {n for n, x in enumerate(lines, 1) if x == "garbage without a status"}
    for q in QUERIES:
        bad = Bad()
        got = [f.line for f in search([path], q, bad)]
        want = [n for n in reference(lines, q) if n not in too_long]
        assert got == want, q
        reported = {m.line for m in bad}
        # whatever the filter: every line without an access line's shape, every long one
        assert garbage - too_long <= reported, q
        assert too_long <= reported, q
        assert all(n in garbage or n in too_long or lines[n - 1] for n in reported)
    # with no filter every malformed line is reported: the bad times too
    bad = Bad()
    list(search([path], RequestQuery(), bad))
    bad_time = {n for n, x in enumerate(lines, 1) if "/Foo/" in x}
    assert bad_time - too_long <= {m.line for m in bad}


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(100, 599),
    method=st.sampled_from(["GET", "get", "POST", "Delete"]),
    note=st.one_of(_TEXT, st.sampled_from(['" 503 x', '"status": 500', '"GET /', "] "])),
    fmt=st.sampled_from([format_combined, format_json]),
    want=st.tuples(
        st.sampled_from([None, (500, 599), (404, 404), (200, 299), (301, 304)]),
        st.sampled_from([None, "GET", "POST", "DELETE"]),
    ),
)
def test_the_finder_finds_every_line_the_query_matches(
    status: int,
    method: str,
    note: str,
    fmt: object,
    want: tuple,  # type: ignore[type-arg]
) -> None:
    line = fmt(rec(1, status=status, method=method, notes={"msg": note}))  # type: ignore[operator]
    q = RequestQuery(status=want[0], method=want[1])
    finder = q.finder()
    if q.matches(parse_line(line)) and finder is not None:
        raw = line.encode()
        assert finder.hit(raw), line
        found, count = finder.lines(b"x\n" + raw + b"\nx\n", 10)
        assert [n for n, _ in found] == [12] and count == 3


def test_non_utf8_and_crlf_lines_in_a_filtered_search(tmp_path: Path) -> None:
    good = [format_combined(rec(i, status=503)) for i in range(3)]
    raw = (good[0] + "\r\n").encode() + b"\xff\xfe u3 x\n" + (good[1] + "\n").encode()
    path = tmp_path / "a.log"
    path.write_bytes(raw + good[2].encode())  # no line break at the end
    bad = Bad()
    got = list(search([path], RequestQuery(status=(500, 599)), bad))
    assert [(f.line, f.record.request_id) for f in got] == [(1, "r0"), (3, "r1"), (4, "r2")]
    assert [(m.line, m.why[:9]) for m in bad] == [(2, "not UTF-8")]


def test_gzip_members_one_after_another_and_trailing_zeros(tmp_path: Path) -> None:
    a = gzip.compress(b"2024-05-01T12:00:00Z [x1] INFO a: one\n")
    b = gzip.compress(b"2024-05-01T12:00:01Z [x1] INFO a: two\n")
    path = tmp_path / "app.log.2.gz"
    path.write_bytes(a + b + b"\x00" * 64)
    bad = Bad()
    assert [n for n, _ in read_lines(path, bad)] == [1, 2] and bad == []
    path.write_bytes(a + b"not gzip at all")
    assert [n for n, _ in read_lines(path, bad)] == [1]
    assert len(bad) == 1 and bad[0].line == 2 and "breaks" in bad[0].why
    got = trace(LogFiles((), (path,), ()), "x1")
    assert [t.line for t in got] == [1]


def test_trace_takes_a_tracebacks_lines_across_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", 64)
    lines = ["2024-05-01T12:00:00Z [rid-9] ERROR app: failed", "Traceback (most recent call last):"]
    lines += [f'  File "app.py", line {i}, in handler' for i in range(20)]
    lines += ["2024-05-01T12:00:02Z [other] INFO app: next", "  not ours"]
    path = tmp_path / "app.log"
    path.write_text("\n".join(lines) + "\n")
    got = trace(LogFiles((), (path,), ()), "rid-9")
    assert [t.line for t in got] == list(range(1, 23))
    assert all(t.continued for t in got[1:]) and got[-1].time == got[0].time


def test_a_page_stops_within_its_budget_and_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", 4096)  # blocks of 4 kB
    old = [format_combined(rec(i)) for i in range(300)]
    new = [format_json(rec(i)) for i in range(300, 600)]
    for at in (250, 100, 10):
        new.insert(at, f"garbage {at}")
    (tmp_path / "access.log.1.gz").write_bytes(gzip.compress(("\n".join(old) + "\n").encode()))
    (tmp_path / "access.log").write_text("\n".join(new) + "\n")
    paths = [tmp_path / "access.log.1.gz", tmp_path / "access.log"]
    q = RequestQuery(user="u3")
    whole = page(paths, q, limit=1000)
    assert whole.stopped is None and len(whole.found) == 86
    bad = Bad()  # over every answer of the stopped scan: each bad line said once
    seen: list[str] = []
    resume: ScanPoint | None = None
    stops = 0
    while True:
        after = None
        while True:  # the pages of one stretch, by next_after
            p = page(
                paths,
                q,
                limit=7,
                after=after,
                budget=Budget(bytes=20_000),
                resume=resume,
                on_bad=bad if after is None else Bad(),
            )
            seen += [f.record.request_id for f in p.found]
            if p.next_after is None:
                break
            after = p.next_after
        if p.stopped is None:
            break
        stops += 1
        resume = ScanPoint.parse(p.stopped.token())
    assert stops >= 4
    assert sorted(m.line for m in bad) == [11, 102, 253]
    assert sorted(seen) == sorted(f.record.request_id for f in whole.found)
    assert len(seen) == len(set(seen))
    # a zero time budget still reads a block, so a scan always moves on
    p = page(paths, q, limit=5, budget=Budget(seconds=0.0))
    assert p.stopped is not None and p.stopped.offset > 0
    # the file rotated meanwhile: refused, said
    point = ScanPoint.parse(p.stopped.token())
    (tmp_path / "access.log").write_text("\n".join(reversed(new)) + "\n")
    with pytest.raises(UsageError, match="rotated"):
        page(paths, q, limit=5, resume=point)
    with pytest.raises(UsageError, match="rotated"):
        page(paths, q, limit=5, resume=ScanPoint("access.log.7.gz", 0, 0))
    for token in ("x", "1.2.3.zz.access.log", "1.2.3.-.", "1.2.3.-.a/b", "1.2.x.-.access.log"):
        with pytest.raises(UsageError, match="resume"):
            ScanPoint.parse(token)


def test_a_value_ending_like_the_time_sends_its_block_line_by_line(tmp_path: Path) -> None:
    odd = rec(1, status=503, notes={"user_id": "u1", "msg": "b +0000] "})
    lines = [format_combined(odd), "garbage", format_combined(rec(2, status=503)), "more garbage"]
    path = tmp_path / "access.log"
    path.write_text("\n".join(lines) + "\n")
    bad = Bad()
    got = [f.line for f in search([path], RequestQuery(status=(500, 599)), bad)]
    assert got == [1, 3] and [m.line for m in bad] == [2, 4]


def traced_logs(tmp_path: Path) -> LogFiles:
    """Access logs (a rotated gzip file, the live one) and an application log (rotated and
    live) holding request ``rid-9`` in each, with a traceback of 400 lines that every scan
    of a few kB stops inside, and a line not UTF-8 among the filler."""
    acc_old = [format_combined(rec(i)) for i in range(200)]
    acc_old[120] = format_combined(rec(120, request_id="rid-9"))
    acc_new = [format_json(rec(i)) for i in range(200, 400)]
    (tmp_path / "access.log.1.gz").write_bytes(gzip.compress(("\n".join(acc_old) + "\n").encode()))
    (tmp_path / "access.log").write_text("\n".join(acc_new) + "\n")
    app_old = [f"2024-05-01T12:01:{i % 60:02d}.000100Z [r{i}] INFO app: filler {i}" for i in range(150)]  # fmt: skip
    app_old[60] = "2024-05-01T12:02:00.000100Z [rid-9] ERROR app: failed"
    app_old[61:61] = [f'  File "app.py", line {i}, in handler' for i in range(400)]
    app_new = [f"2024-05-01T12:07:{i % 60:02d}.000100Z [r{i}] INFO app: filler {i}" for i in range(150)]  # fmt: skip
    app_new[100] = "2024-05-01T12:07:40.000100Z [rid-9] INFO app: retried"
    raw = "\n".join(app_new).encode().replace(b"filler 7\n", b"filler \xff\n") + b"\n"
    (tmp_path / "app.log.1").write_text("\n".join(app_old) + "\n")
    (tmp_path / "app.log").write_bytes(raw)
    return LogFiles(
        (tmp_path / "access.log.1.gz", tmp_path / "access.log"),
        (tmp_path / "app.log.1", tmp_path / "app.log"),
        (),
    )


@pytest.mark.parametrize("budget", [1, 3000, 9000, 40_000])
def test_a_trace_stops_within_its_budget_and_resumes_to_the_whole_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", 1024)  # blocks of 1 kB
    files = traced_logs(tmp_path)
    whole_bad = Bad()
    whole = trace(files, "rid-9", whole_bad)
    assert len(whole) == 403 and [m.why[:9] for m in whole_bad] == ["not UTF-8"]
    assert all(t.continued and t.time == whole[1].time for t in whole[2:402])
    seen: list[tuple[str, int, str, object, bool]] = []
    bad = Bad()
    resume: ScanPoint | None = None
    stops = 0
    while True:
        got = trace_scan(files, "rid-9", bad, budget=Budget(bytes=budget), resume=resume)
        times = [t.time for t in got.lines if t.time is not None]
        assert times == sorted(times)  # each stretch in time order
        seen += [(t.file.name, t.line, t.text, t.time, t.continued) for t in got.lines]
        if got.stopped is None:
            break
        stops += 1
        resume = ScanPoint.parse(got.stopped.token())
    assert sorted(seen, key=str) == sorted(
        ((t.file.name, t.line, t.text, t.time, t.continued) for t in whole), key=str
    )
    assert len(seen) == len(set(seen))
    assert [m.why[:9] for m in bad] == ["not UTF-8"]  # said once over the stretches
    assert stops >= (3 if budget < 40_000 else 1)


def test_a_stale_trace_resume_is_refused_gzip_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", 1024)
    files = traced_logs(tmp_path)
    points = []
    resume: ScanPoint | None = None
    while True:
        got = trace_scan(files, "rid-9", budget=Budget(bytes=3000), resume=resume)
        if got.stopped is None:
            break
        resume = got.stopped
        points.append(resume)
    in_gz = next(p for p in points if p.file == "access.log.1.gz" and p.offset > 0)
    in_app = next(p for p in points if p.file == "app.log.1" and p.taking)
    assert ScanPoint.parse(in_app.token()) == in_app  # the entry's state goes in the token
    (tmp_path / "app.log.1").write_text("2024-05-01T12:00:00Z rotated\n" * 50)
    with pytest.raises(UsageError, match="rotated"):
        trace_scan(files, "rid-9", resume=in_app)
    (tmp_path / "access.log.1.gz").write_bytes(gzip.compress(b"short\n"))
    with pytest.raises(UsageError, match="rotated"):
        trace_scan(files, "rid-9", resume=in_gz)
    (tmp_path / "access.log.1.gz").unlink()
    with pytest.raises(UsageError, match="rotated"):
        trace_scan(files, "rid-9", resume=in_gz)


@pytest.mark.parametrize("gz", [False, True])
def test_since_skips_blocks_wholly_before_it_and_keeps_late_arrivals_near_the_edge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gz: bool
) -> None:
    """Lines are written when their response ends but carry the arrival, so a slow request's
    line follows quicker ones that arrived after it: near ``since`` a block can end with a
    line from before ``since`` and still hold lines from after it."""
    from signalbox.instrument import logfiles

    monkeypatch.setattr(logblocks, "MAX_LINE_BYTES", 1024)  # blocks of 1 kB
    since = T0 + timedelta(seconds=3000)
    lines = [format_combined(rec(i)) for i in range(0, 2800)]
    lines[40] = "garbage without a status"  # said, skipped block or not
    lines[41] = format_combined(rec(41)).replace("/May/", "/Foo/")  # shaped: not parsed
    slow = timedelta(minutes=20)
    for j in range(60):  # the edge: quick requests after since, slow ones from before it
        if j % 3 == 2:
            r = rec(5000 + j, time=since - slow + timedelta(seconds=j), duration_us=int((slow + timedelta(minutes=1)).total_seconds() * 1e6))  # fmt: skip
        else:
            r = rec(5000 + j, time=since + timedelta(seconds=j))
        lines.append((format_json if j % 2 else format_combined)(r))
    lines += [format_combined(rec(i, time=since + timedelta(seconds=60 + i))) for i in range(50)]
    data = "".join(x + "\n" for x in lines).encode()
    path = tmp_path / "access.log"
    path.write_bytes(gzip.compress(data) if gz else data)
    # the edge is there: a block ending with a line from before since holds one after it
    edge, blocks = False, 0
    for _, block in logblocks.read_blocks(path, Bad(), logblocks.LineCount()):
        blocks += 1
        texts = block.decode().splitlines()
        if "garbage" not in block.decode() and "/Foo/" not in block.decode():
            times = [parse_line(x).time for x in texts]
            edge = edge or (times[-1] < since <= max(times))
    assert edge
    parsed = 0
    real = parse_line

    def counting(text: str, source: str = "(line)", line: int = 0) -> AccessRecord:
        nonlocal parsed
        parsed += 1
        return real(text, source, line)

    monkeypatch.setattr(logfiles, "parse", counting)
    for q in (RequestQuery(since=since), RequestQuery(since=since, status=(200, 200))):
        bad = Bad()
        parsed = 0
        got = [f.line for f in search([path], q, bad)]
        assert got == reference(lines, q)
        assert len(got) == 90
        # of 2,910 lines: each block's last, and the blocks near since and after it
        assert parsed < blocks + 250
        assert [m.line for m in bad] == [41]  # garbage said; the bad time in a skipped block not
    p = page([path], RequestQuery(since=since), limit=1000)
    assert sorted(f.line for f in p.found) == reference(lines, RequestQuery(since=since))
