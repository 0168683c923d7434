"""Calendar fields of a Unix time for PromQL's date functions (``hour``, ``year``, ...).

Prometheus reads a sample value ``v`` as ``time.Unix(int64(v), 0).UTC()``. Python's
``datetime`` stops at year 9999 and sample values do not, so the fields come from integer
day arithmetic (proleptic Gregorian, any year) rather than from ``datetime``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)


def go_seconds(v: float) -> int:
    """Go's ``int64(v)``: truncation toward zero. NaN is 0 and out-of-range values
    saturate, as Go does on arm64 (amd64 returns the minimum int64 for all three; the
    result of a NaN or infinite time is undefined in Go and only needs to be a number)."""
    if v != v:
        return 0
    if v >= 2.0**63:
        return _INT64_MAX
    if v < -(2.0**63):
        return _INT64_MIN
    return math.trunc(v)


def _civil(secs: int) -> tuple[int, int, int]:
    """(year, month, day) of the UTC day holding ``secs`` (H. Hinnant's days-to-civil)."""
    z = secs // 86_400 + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


_DAYS_BEFORE = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_DAYS_IN = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _day_of_year(secs: int) -> float:
    y, m, d = _civil(secs)
    return float(_DAYS_BEFORE[m - 1] + d + (m > 2 and _leap(y)))


def _days_in_month(secs: int) -> float:
    y, m, _ = _civil(secs)
    return float(_DAYS_IN[m - 1] + (m == 2 and _leap(y)))


DATE_FIELDS: dict[str, Callable[[int], float]] = {
    "day_of_month": lambda s: float(_civil(s)[2]),
    "day_of_week": lambda s: float((s // 86_400 + 4) % 7),  # 1970-01-01 was a Thursday (4)
    "day_of_year": _day_of_year,
    "days_in_month": _days_in_month,
    "hour": lambda s: float(s % 86_400 // 3600),
    "minute": lambda s: float(s % 3600 // 60),
    "month": lambda s: float(_civil(s)[1]),
    "year": lambda s: float(_civil(s)[0]),
}
