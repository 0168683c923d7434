"""Nagios perfdata as metric samples and metadata, in base units (pure).

Turning perfdata into metrics (:func:`perfdata_to_samples`) converts to base units so a
graph or a query never mixes ``ms`` and ``s``. Naming, for check ``CHECK`` and label
``LABEL`` (both sanitized to ``[A-Za-z0-9_]``)::

    nagios_CHECK_LABEL[_UNIT]           the value (omitted when the value is ``U``)
    nagios_CHECK_LABEL_warn[_UNIT]      upper bound of the warning range, when finite
    nagios_CHECK_LABEL_warn_low[_UNIT]  lower bound, when the range spells one (``10:20``)
    nagios_CHECK_LABEL_crit[_UNIT] / _crit_low[_UNIT]   the same for the critical range
    nagios_CHECK_LABEL_min[_UNIT] / _max[_UNIT]         min and max, when given

``UNIT`` is ``seconds`` (s, ms, us), ``bytes`` (B, KB, MB, GB, TB, PB: binary multiples,
as the Monitoring Plugins compute them; KiB... are accepted too) or ``percent``; a ``c``
(counter) value is named ``..._total`` and typed counter, its thresholds are plain. A
unit we do not know is kept unconverted, without a name suffix, in a ``nagios_uom`` label.
When sanitizing changed the label (``/var`` -> ``var``), every series of that datum carries
the original in a ``nagios_label`` label, so ``/var`` and ``_var`` never collide; a label
with nothing left after sanitizing (check_disk's ``/``) names no suffix at all. A range
that alerts *inside* (``@10:20``) marks its threshold series with ``nagios_alert="inside"``.

The perfdata itself comes from :mod:`signalbox.monitors.nagios.perfdata_parse`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from signalbox.metrics.samples import Labels, MetricMeta, Sample, labels_of
from signalbox.monitors.nagios.perfdata_parse import PerfDatum

# UOM -> (multiplier, divisor, metric name suffix); dividing keeps 250ms exactly 0.25s
_UNITS: dict[str, tuple[float, float, str]] = {
    "": (1.0, 1.0, ""),
    "s": (1.0, 1.0, "seconds"),
    "ms": (1.0, 1e3, "seconds"),
    "us": (1.0, 1e6, "seconds"),
    "µs": (1.0, 1e6, "seconds"),
    "%": (1.0, 1.0, "percent"),
    "B": (1.0, 1.0, "bytes"),
    "KB": (1024.0, 1.0, "bytes"),
    "kB": (1024.0, 1.0, "bytes"),
    "MB": (1024.0**2, 1.0, "bytes"),
    "GB": (1024.0**3, 1.0, "bytes"),
    "TB": (1024.0**4, 1.0, "bytes"),
    "PB": (1024.0**5, 1.0, "bytes"),
    "KiB": (1024.0, 1.0, "bytes"),
    "MiB": (1024.0**2, 1.0, "bytes"),
    "GiB": (1024.0**3, 1.0, "bytes"),
    "TiB": (1024.0**4, 1.0, "bytes"),
    "PiB": (1024.0**5, 1.0, "bytes"),
    "c": (1.0, 1.0, "total"),
}
KNOWN_UOMS: frozenset[str] = frozenset(_UNITS)


_NOT_NAME = re.compile(r"[^A-Za-z0-9_]+")


def sanitize_part(text: str) -> str:
    """A label or check name as a metric-name part: runs outside ``[A-Za-z0-9_]`` become ``_``."""
    return re.sub(r"_+", "_", _NOT_NAME.sub("_", text)).strip("_")


@dataclass(frozen=True, slots=True)
class _Naming:
    base: str
    suffix: str  # unit suffix for thresholds/min/max ("" for counters and unknown units)
    value_suffix: str
    mul: float
    div: float
    labels: dict[str, str]

    def scale(self, x: float) -> float:
        return x * self.mul / self.div


def _naming(check_name: str, d: PerfDatum) -> _Naming:
    check = sanitize_part(check_name)
    part = sanitize_part(d.label)
    base = "_".join(p for p in ("nagios", check, part) if p)
    labels: dict[str, str] = {}
    if part != d.label:
        labels["nagios_label"] = d.label
    mul, div, unit = _UNITS.get(d.uom, (1.0, 1.0, ""))
    if d.uom not in _UNITS:
        labels["nagios_uom"] = d.uom
    if not unit or base.endswith(f"_{unit}"):
        return _Naming(base, "", "", mul, div, labels)
    return _Naming(base, "" if unit == "total" else f"_{unit}", f"_{unit}", mul, div, labels)


def perfdata_to_samples(
    check_name: str,
    perfdata: Sequence[PerfDatum],
    *,
    labels: Labels | dict[str, str] = (),
    timestamp_ms: int | None = None,
) -> list[Sample]:
    """Metric samples for ``perfdata`` of check ``check_name``, in base units (see module doc).

    ``labels`` (e.g. ``host``) are added to every series.
    """
    common = dict(labels_of(labels))
    out: list[Sample] = []
    for d in perfdata:
        nm = _naming(check_name, d)
        series_labels = labels_of({**common, **nm.labels})
        if d.value is not None:
            out.append(
                Sample(nm.base + nm.value_suffix, series_labels, nm.scale(d.value), timestamp_ms)
            )
        for kind, t in (("warn", d.warn), ("crit", d.crit)):
            if t is None:
                continue
            t_labels = (
                labels_of({**dict(series_labels), "nagios_alert": "inside"})
                if t.inside
                else series_labels
            )
            if math.isfinite(t.end):
                out.append(
                    Sample(f"{nm.base}_{kind}{nm.suffix}", t_labels, nm.scale(t.end), timestamp_ms)
                )
            if t.start_given and math.isfinite(t.start):
                out.append(
                    Sample(
                        f"{nm.base}_{kind}_low{nm.suffix}",
                        t_labels,
                        nm.scale(t.start),
                        timestamp_ms,
                    )
                )
        for kind, bound in (("min", d.min), ("max", d.max)):
            if bound is not None:
                out.append(
                    Sample(
                        f"{nm.base}_{kind}{nm.suffix}",
                        series_labels,
                        nm.scale(bound),
                        timestamp_ms,
                    )
                )
    return out


def perfdata_metadata(check_name: str, perfdata: Sequence[PerfDatum]) -> list[MetricMeta]:
    """Type/unit/help for the value series :func:`perfdata_to_samples` makes (counters for ``c``)."""
    metas: dict[str, MetricMeta] = {}
    for d in perfdata:
        nm = _naming(check_name, d)
        unit = _UNITS.get(d.uom, (1.0, 1.0, ""))[2]
        name = nm.base + nm.value_suffix
        metas[name] = MetricMeta(
            name,
            "counter" if unit == "total" else "gauge",
            f"Nagios perfdata {d.label!r} of {check_name}",
            "" if unit == "total" else unit,
        )
    return list(metas.values())
