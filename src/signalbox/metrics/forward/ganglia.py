"""Forwarding to Ganglia: gmetric messages (Ganglia 3.1+, XDR) over UDP to a gmond.

Each sample goes as two datagrams, as ``gmetric`` sends them: the metric's metadata
(``gmetadata_full``, id 128: type ``double``, units, slope, tmax, dmax, and the extra data
``GROUP`` and ``SPOOF_HOST``) and its value (``gmetric_string``, id 133, ``%s``). The
metadata goes with every value, so a gmond that restarted knows the metric again at the
next pass.

Mapping:
    * the series' ``host`` label is the Ganglia host (spoofed: gmond lists the series
      under that host, ``IP`` and ``NAME`` both set to it);
    * the Ganglia metric name is the metric name followed by the other labels as
      ``.label.value`` pairs, sorted by label name, values percent-escaped as in Graphite's
      dotted naming (see :mod:`~signalbox.metrics.forward.naming`) -- gmond writes names
      into its XML unescaped, so nothing outside ``[A-Za-z0-9_%.:-]`` may reach it;
    * slope ``positive`` for counters, ``both`` otherwise; units from the metric's unit;
      tmax the send interval, dmax ``[forward.ganglia] lifetime``.

NaN and infinities, and series whose messages exceed gmond's default datagram size (1472
bytes, ``max_udp_msg_len``: a longer one is cut and cannot be decoded) are skipped and
counted as dropped. Over UDP, "sent" means handed to the kernel; a refused port is noticed
by the next send (ICMP), which fails the pass and backs off like a TCP peer.
"""

from __future__ import annotations

import math
import socket
import struct
from collections.abc import Iterable

from signalbox.metrics.expose import format_value
from signalbox.metrics.forward.naming import escape
from signalbox.metrics.forward.passes import CollectedPass
from signalbox.metrics.forward.sender import Encoded
from signalbox.metrics.samples import Labels, MetricMeta, format_series

__all__ = ["GangliaEncoder", "UdpTransport", "ganglia_name", "metadata_message", "value_message"]

MAX_DATAGRAM_BYTES = 1472
GMETADATA_FULL = 128
GMETRIC_STRING = 128 + 5
SLOPES = {"zero": 0, "positive": 1, "negative": 2, "both": 3, "unspecified": 4}

_INT = struct.Struct(">i")
_META_TAIL = struct.Struct(">iII")


def _xdr_string(text: str) -> bytes:
    b = text.encode("utf-8")
    return _INT.pack(len(b)) + b + b"\0" * (-len(b) % 4)


def ganglia_name(name: str, labels: Labels) -> str:
    """The metric name gmond shows: ``name.label.value...`` without ``host``."""
    return escape(name) + "".join(f".{k}.{escape(v, '-:')}" for k, v in labels if v and k != "host")


def ganglia_host(labels: Labels, default: str) -> str:
    """The Ganglia host of a series: its ``host`` label (``:`` escaped: gmetric's spoof
    string is ``IP:NAME``)."""
    for k, v in labels:
        if k == "host" and v:
            return escape(v, "-.")
    return escape(default, "-.")


def metadata_message(
    host: str,
    name: str,
    *,
    units: str = "",
    slope: str = "both",
    tmax: int = 60,
    dmax: int = 0,
    group: str = "",
) -> bytes:
    """``gmetadata_full`` for a ``double`` metric of spoofed ``host``."""
    spoof = f"{host}:{host}"
    extra = [("GROUP", group)] if group else []
    extra.append(("SPOOF_HOST", spoof))
    return b"".join(
        [
            _INT.pack(GMETADATA_FULL),
            _xdr_string(spoof),
            _xdr_string(name),
            _INT.pack(1),  # spoofed
            _xdr_string("double"),
            _xdr_string(name),
            _xdr_string(units),
            _META_TAIL.pack(SLOPES[slope], tmax, dmax),
            _INT.pack(len(extra)),
            *(_xdr_string(k) + _xdr_string(v) for k, v in extra),
        ]
    )


def value_message(host: str, name: str, value: str) -> bytes:
    """``gmetric_string``: the value as text, which gmond reads as the metadata's type."""
    return b"".join(
        [
            _INT.pack(GMETRIC_STRING),
            _xdr_string(f"{host}:{host}"),
            _xdr_string(name),
            _INT.pack(1),
            _xdr_string("%s"),
            _xdr_string(value),
        ]
    )


class GangliaEncoder:
    """A pass as gmetric datagrams: metadata then value, per sample."""

    def __init__(self, *, host: str, tmax_s: float, dmax_s: float, group: str) -> None:
        self.host = host
        self.tmax = max(1, math.ceil(tmax_s))
        self.dmax = max(0, math.ceil(dmax_s))
        self.group = escape(group, "-.:")
        self._metas: dict[str, MetricMeta] = {}
        self._heads: dict[tuple[str, Labels], tuple[bytes, str, str] | None] = {}
        self._changed = False

    def describe(self, metas: Iterable[MetricMeta]) -> None:
        known = self._metas
        for m in metas:  # dict updates: the collection thread only stores
            if known.get(m.name) != m:
                known[m.name] = m
                self._changed = True  # the next encoding builds its metadata afresh

    def _head(self, name: str, labels: Labels) -> tuple[bytes, str, str] | None:
        """(metadata datagram, host, ganglia name), or None when it is too long."""
        host = ganglia_host(labels, self.host)
        gname = ganglia_name(name, labels)
        meta = self._metas.get(name)
        data = metadata_message(
            host,
            gname,
            units=escape(meta.unit, "-./") if meta is not None and meta.unit else "",
            slope="positive" if meta is not None and meta.type == "counter" else "both",
            tmax=self.tmax,
            dmax=self.dmax,
            group=self.group,
        )
        if len(data) > MAX_DATAGRAM_BYTES:
            return None
        return data, host, gname

    def encode(self, p: CollectedPass) -> Encoded:
        heads, fresh = self._heads, {}
        if self._changed:
            self._changed = False
            heads = {}
        chunks: list[bytes] = []
        sent = skipped = 0
        example = ""
        for name, labels, value, _ts in p.series():
            key = (name, labels)
            head = heads[key] if key in heads else self._head(name, labels)
            fresh[key] = head
            if head is None:
                skipped += 1
                example = example or f"{format_series(name, labels)}: name too long for gmond"
                continue
            if not math.isfinite(value):
                skipped += 1
                example = example or f"{format_series(name, labels)} is {format_value(value)}"
                continue
            meta, host, gname = head
            chunks.append(meta)
            chunks.append(value_message(host, gname, format_value(value)))
            sent += 1
        self._heads = fresh  # the series of the last pass: no growth past them
        return Encoded(chunks, sent, skipped, example)


class UdpTransport:
    """A connected UDP socket (so a refused port is reported), each send timed out."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None

    def send(self, chunks: Iterable[bytes]) -> None:
        if self._sock is None:
            family, kind, proto, _, addr = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, kind, proto)
            sock.settimeout(self.timeout_s)
            try:
                sock.connect(addr)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        try:
            for datagram in chunks:
                self._sock.send(datagram)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
