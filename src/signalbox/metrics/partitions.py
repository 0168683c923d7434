"""Time partitioning of samples: pure arithmetic, no I/O.

Samples live in one table per (tier, time span), each clustered by (series_id, ts). Writes
of one collection pass touch only the newest partition, so their cost depends on how much
that partition holds, not on how much history is kept; reading one series is an index range
scan per partition; retention drops whole tables instead of deleting rows.

Spans are chosen so that every partition boundary of tier ``i`` is also a bucket boundary of
tier ``i + 1``: a rollup bucket never straddles two source partitions.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from signalbox.durations import Tier

RAW = 0
"""Tier id of raw samples; rollup tiers use their resolution in seconds as id."""

SEALED_UNIT_BUCKETS = 60
"""Buckets in a sealed unit (:mod:`signalbox.metrics.sealed`), kept here, away from numpy, so
a compaction with nothing to seal or unseal can tell without importing it."""


@dataclass(frozen=True, slots=True)
class Level:
    """One storage level: raw (resolution 0) or a rollup tier."""

    tier: int  # 0 for raw, else resolution in seconds
    span_ms: int  # partition length
    retention_ms: int

    def partition_start(self, ts_ms: int) -> int:
        return ts_ms - ts_ms % self.span_ms

    def table(self, start_ms: int) -> str:
        if self.tier == RAW:
            return f"samples_raw_{start_ms // 1000}"
        return f"buckets_r{self.tier}_{start_ms // 1000}"

    @property
    def unit_ms(self) -> int:
        """The span of one sealed unit of this level (:data:`SEALED_UNIT_BUCKETS` buckets),
        or 0 when the level is not sealed (raw, or a partition span that units would
        straddle)."""
        if self.tier == RAW:
            return 0
        unit = self.tier * 1000 * SEALED_UNIT_BUCKETS
        return unit if self.span_ms % unit == 0 else 0

    def legacy_table(self, start_ms: int) -> str:
        """A rollup partition as schema 4 and earlier named it: buckets keyed by their start,
        without the statistics that make range functions exact."""
        return f"samples_r{self.tier}_{start_ms // 1000}"


def levels(
    raw_retention_s: int, tiers: tuple[Tier, ...], raw_span_s: int = 300
) -> tuple[Level, ...]:
    """Raw level then one level per tier, with aligned partition spans."""
    out: list[Level] = []
    resolutions = [t.resolution for t in tiers]
    # raw: about raw_span_s (5 minutes), a multiple of the first tier's resolution. Short,
    # because a pass dirties every page of the partition it writes to (rows are clustered by
    # series), so its cost grows with the samples per series the partition already holds.
    first = resolutions[0]
    out.append(Level(RAW, first * math.ceil(raw_span_s / first) * 1000, raw_retention_s * 1000))
    for i, t in enumerate(tiers):
        want = t.resolution * 1440  # about 1440 buckets a partition
        nxt = resolutions[i + 1] if i + 1 < len(resolutions) else t.resolution
        span = nxt * math.ceil(want / nxt)
        out.append(Level(t.resolution, span * 1000, t.retention * 1000))
    return tuple(out)


def segments(start_ms: int, end_ms: int, spans: tuple[int, ...]) -> list[tuple[int, int]]:
    """Split ``[start_ms, end_ms)`` at every multiple of each span."""
    cuts = {start_ms, end_ms}
    for span in spans:
        k = (start_ms // span + 1) * span
        while k < end_ms:
            cuts.add(k)
            k += span
    pts = sorted(cuts)
    return [(a, b) for a, b in itertools.pairwise(pts) if a < b]
