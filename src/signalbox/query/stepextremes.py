"""``max``/``min`` of a group's series at every step at once, as ``aggregate`` answers them
step by step with :func:`~signalbox.query.functions.nan_ignoring_max`/``_min``.

A group without gaps is a (series x steps) array, and ``np.fmax``/``np.fmin`` ignore NaN as
Prometheus does, so one reduction answers every step whose pick is unambiguous: a nonzero
number (equal picks have equal bits). Python's reduction still answers a step whose pick is
zero (``max(0.0, -0.0)`` keeps the first, numpy's is its own) or NaN (every value NaN:
the functions' own NaN), and a group with a gap is left to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from signalbox.query.functions import nan_ignoring_max, nan_ignoring_min


def step_extremes(
    rows: Sequence[Sequence[float | None]], largest: bool
) -> list[float | None] | None:
    """Each step's ``max`` (``largest``) or ``min`` of ``rows`` (one a series, one value a
    step); None if a series has a gap (no value at a step): then step by step."""
    if any(None in r for r in rows):
        return None
    values = np.array(rows, dtype=np.float64)
    got = (np.fmax if largest else np.fmin).reduce(values, axis=0)
    out: list[float | None] = got.tolist()
    again = np.flatnonzero((got == 0) | np.isnan(got))
    if len(again):
        reduce = nan_ignoring_max if largest else nan_ignoring_min
        for i in again.tolist():
            out[i] = reduce([r[i] for r in rows])  # type: ignore[misc]
    return out
