"""Query results in the Prometheus HTTP API shape, so Grafana's Prometheus datasource and
other Prometheus clients read our ``/api/v1/query`` and ``/api/v1/query_range`` unchanged.

Values are strings formatted like Go's ``strconv.FormatFloat(v, 'f', -1, 64)`` (shortest
exact decimal, never exponent notation; ``NaN``, ``+Inf``, ``-Inf``) and timestamps are
seconds as a number, as Prometheus writes them.

Two forms of the same answer: :func:`result_to_prometheus` (a dict, for callers that look
inside) and :func:`result_json` (the JSON bytes the API sends). A range answer is ~24,000
``[time, "value"]`` pairs a megabyte long; building a dict tree of them and then encoding it
cost a third of a request, so :func:`result_json` writes the pairs as text directly (each
distinct timestamp formatted once per answer) and lets msgspec encode only the label sets,
the one part that needs JSON escaping. Both give the same JSON (a test compares them).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from signalbox.query.values import QueryResult

_SPECIAL = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}


def format_value(v: float) -> str:
    """A sample value as Prometheus prints it in JSON."""
    text = repr(v)  # the shortest exact decimal; it differs from Go's only in the forms below
    if text[-2:] == ".0":  # integral: "5.0", "-0.0", "1000000000000000.0"
        return text[:-2]
    if "e" in text or "n" in text:  # exponent form ("1e+20", "1.5e-07"), nan, inf
        special = _SPECIAL.get(text)
        if special is not None:
            return special
        text = format(Decimal(text), "f")
        return text[:-2] if text.endswith(".0") else text
    return text


def format_time(ms: int) -> int | float:
    """Milliseconds as the seconds number Prometheus puts in ``[time, "value"]`` pairs."""
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def result_to_prometheus(result: QueryResult) -> dict[str, Any]:
    """``{"resultType": ..., "result": ...}`` for one :class:`QueryResult`."""
    if result.result_type == "scalar":
        assert result.scalar is not None and result.at_ms is not None
        return {
            "resultType": "scalar",
            "result": [format_time(result.at_ms), format_value(result.scalar)],
        }
    if result.result_type == "string":
        assert result.string is not None and result.at_ms is not None
        return {"resultType": "string", "result": [format_time(result.at_ms), result.string]}
    if result.result_type == "vector":
        at = format_time(result.at_ms or 0)
        return {
            "resultType": "vector",
            "result": [
                {"metric": s.metric, "value": [at, format_value(s.value)]} for s in result.vector
            ],
        }
    return {
        "resultType": "matrix",
        "result": [
            {"metric": s.metric, "values": [[format_time(t), format_value(v)] for t, v in s.points]}
            for s in result.matrix
        ],
    }


def result_json(result: QueryResult) -> bytes:
    """The JSON of :func:`result_to_prometheus` (msgspec's encoding of it, byte for byte),
    written without building the dict first: see the module docstring."""
    if result.result_type != "matrix":
        return msgspec.json.encode(result_to_prometheus(result))
    enc = msgspec.json.encode
    opens: dict[int, bytes] = {}  # '[t,"' per step, shared by every series of the answer
    parts = [b'{"resultType":"matrix","result":[']
    last_times: tuple[int, ...] = ()
    heads: list[bytes] = []
    for i, s in enumerate(result.matrix):
        parts.append(b'{"metric":' if i == 0 else b',{"metric":')
        parts.append(enc(s.metric))
        if not s.points:
            parts.append(b',"values":[]}')
            continue
        times, values = zip(*s.points, strict=True)
        if times != last_times:  # series of one answer mostly share their steps
            last_times, heads = times, []
            for t in times:
                head = opens.get(t)
                if head is None:
                    head = opens[t] = b'"],[' + enc(format_time(t)) + b',"'
                heads.append(head)
            heads[0] = heads[0][3:]  # the first pair follows no other
        pairs: list[bytes] = [b""] * (2 * len(heads))
        pairs[0::2] = heads
        pairs[1::2] = _value_texts(values)
        parts.append(b',"values":[')
        parts.append(b"".join(pairs))
        parts.append(b'"]]}')
    parts.append(b"]}")
    return b"".join(parts)


def _value_texts(values: tuple[float, ...]) -> list[bytes]:
    """:func:`format_value` of each value, as bytes. msgspec writes the same shortest
    digits as ``repr`` (in C, for the whole list at once); what it writes differently from
    Go is fixed here: ``5.0`` loses its ``.0``, and the rare exponent forms and the
    non-finite values (``null`` to msgspec) are formatted one by one."""
    text = msgspec.json.encode(values)
    # ".0" before a separator is a whole fraction of 0 (msgspec writes no other zeros)
    tokens = text.replace(b".0,", b",").replace(b".0]", b"]")[1:-1].split(b",")
    if b"e" in text or b"n" in text:
        return [
            format_value(v).encode() if b"e" in tok or b"n" in tok else tok
            for tok, v in zip(tokens, values, strict=True)
        ]
    return tokens
