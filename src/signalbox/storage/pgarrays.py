"""PostgreSQL array parameters built in bulk, in the server's binary array format.

psycopg dumps a Python list for an array parameter element by element in Python, and in
text format each element also goes through a regular expression (does it need quotes?):
the 100,000 values of a pass's frames took ~0.6 s that way, more than the whole SQLite
pass spends storing them. Here an array is built at C speed from ``array`` objects and
bytes slices, and handed to psycopg as a parameter it sends as is, so one statement of
``unnest`` takes a whole pass's rows (see :mod:`signalbox.metrics.sql.frames`).

The binary format (``array_recv``): dimensions (1), a has-nulls flag, the element type's
oid, the length and lower bound (1), then each element as its byte length and bytes
(big-endian for numbers; -1 and no bytes for NULL). An empty array has no dimensions.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "ByteaArray",
    "Float8Array",
    "Int8Array",
    "bind",
    "bytea_array",
    "float8_array",
    "int8_array",
    "text_array",
]

_FLOAT8, _INT8, _BYTEA = 701, 20, 17  # element type oids
_FLOAT8_ARRAY, _INT8_ARRAY, _BYTEA_ARRAY = 1022, 1016, 1001
_NULL = b"\xff\xff\xff\xff"


class Float8Array(bytes):
    """A ``float8[]`` parameter (build with :func:`float8_array`)."""


class Int8Array(bytes):
    """An ``int8[]`` parameter (build with :func:`int8_array`)."""


class ByteaArray(bytes):
    """A ``bytea[]`` parameter (build with :func:`bytea_array`)."""


def _header(n: int, elem_oid: int, nulls: bool = False) -> bytes:
    if n == 0:
        return struct.pack(">iii", 0, 0, elem_oid)
    return struct.pack(">iiiii", 1, int(nulls), elem_oid, n, 1)


def _fixed(n: int, elem_oid: int, raw: bytes) -> bytes:
    """The array of ``n`` 8-byte elements whose big-endian bytes are ``raw``, without a
    Python step per element: each length field and each byte column of the values is one
    strided slice assignment."""
    head = _header(n, elem_oid)
    out = bytearray(len(head) + 12 * n)
    out[: len(head)] = head
    h = len(head)
    out[h + 3 :: 12] = b"\x08" * n  # the length of each element: 8 (0, 0, 0, 8)
    for k in range(8):
        out[h + 4 + k :: 12] = raw[k::8]
    return bytes(out)


def _big_endian(a: array[Any]) -> bytes:
    if sys.byteorder == "little":
        a.byteswap()
    return a.tobytes()


def float8_array(values: Iterable[float | None], *, nulls: bool = False) -> Float8Array:
    """``values`` (floats, ints, NaN and infinities) as a ``float8[]``; with ``nulls``,
    None is NULL (else TypeError, as ``float(None)``)."""
    vals = values if isinstance(values, list) else list(values)
    if nulls and None in vals:
        return Float8Array(_with_nulls(vals, _FLOAT8, ">d"))
    return Float8Array(_fixed(len(vals), _FLOAT8, _big_endian(array("d", vals))))


def int8_array(values: Sequence[int] | range) -> Int8Array:
    """``values`` (64-bit integers) as an ``int8[]``; past 64 bits, OverflowError."""
    return Int8Array(_fixed(len(values), _INT8, _big_endian(array("q", values))))


def bytea_array(blobs: Sequence[bytes]) -> ByteaArray:
    """``blobs`` as a ``bytea[]`` (a step per element: meant for hundreds, not millions)."""
    n = len(blobs)
    parts = [_header(n, _BYTEA)]
    for b in blobs:
        parts.append(len(b).to_bytes(4, "big"))
        parts.append(bytes(b))
    return ByteaArray(b"".join(parts))


def _with_nulls(vals: list[Any], elem_oid: int, fmt: str) -> bytes:
    pack = struct.Struct(fmt).pack
    parts = [_NULL if v is None else b"\x00\x00\x00\x08" + pack(v) for v in vals]
    return _header(len(vals), elem_oid, nulls=True) + b"".join(parts)


def text_array(strings: Sequence[str]) -> str:
    """``strings`` as the text of a ``text[]`` literal (pass it cast: ``?::text[]``).

    Every element is quoted, its backslashes and quotes escaped, which leaves any text as
    it was (braces, commas, tabs, newlines, "NULL", the empty string). Built on the joined
    text, not element by element: the strings are joined by NUL, which no text sent to
    the server may hold, so one holding it is refused here, naming it."""
    if not strings:
        return "{}"
    joined = "\x00".join(strings)
    if joined.count("\x00") != len(strings) - 1:
        bad = next(s for s in strings if "\x00" in s)
        raise ValueError(f"text holds a NUL character, which PostgreSQL refuses: {bad!r}")
    return '{"' + joined.replace("\\", "\\\\").replace('"', '\\"').replace("\x00", '","') + '"}'


def bind(conn: Any) -> None:
    """Teach a psycopg connection to send these classes as they are (binary parameters of
    their array type). Cheap enough to call before each use: a connection keeps its own
    map of dumpers, and registering one again replaces it."""
    adapters = conn.adapters
    for cls, dumper in _dumpers().items():
        adapters.register_dumper(cls, dumper)


_DUMPERS: dict[type, Any] = {}


def _dumpers() -> dict[type, Any]:
    if _DUMPERS:
        return _DUMPERS
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    def make(oid: int) -> type[Dumper]:
        class ArrayDumper(Dumper):
            # the oid is set per instance, not on the class: psycopg also registers a class
            # with an oid as *the* dumper of that type (by oid, e.g. for typed COPY), which
            # would then be handed lists it cannot dump
            format = Format.BINARY

            def __init__(self, cls: type, context: Any = None) -> None:
                super().__init__(cls, context)
                self.oid = oid

            def dump(self, obj: Any) -> bytes:
                return obj  # type: ignore[no-any-return]

        return ArrayDumper

    _DUMPERS.update(
        {
            Float8Array: make(_FLOAT8_ARRAY),
            Int8Array: make(_INT8_ARRAY),
            ByteaArray: make(_BYTEA_ARRAY),
        }
    )
    return _DUMPERS
