"""Nagios plugin output and performance data: parsing it, and turning it into metrics.

This module is the stable import point; the code lives in one module per concept:
:mod:`~signalbox.monitors.perfdata_parse` (the plugin output grammar: status text, long
output, perfdata items and ranges, parsed without ever raising) and
:mod:`~signalbox.monitors.perfdata_metrics` (perfdata as samples and metadata in base
units, and how those series are named).
"""

from __future__ import annotations

from signalbox.monitors.perfdata_metrics import (
    KNOWN_UOMS,
    perfdata_metadata,
    perfdata_to_samples,
    sanitize_part,
)
from signalbox.monitors.perfdata_parse import (
    PerfDatum,
    PluginOutput,
    Range,
    format_perfdatum,
    format_range,
    parse_perfdata,
    parse_plugin_output,
    parse_range,
)

__all__ = [
    "KNOWN_UOMS",
    "PerfDatum",
    "PluginOutput",
    "Range",
    "format_perfdatum",
    "format_range",
    "parse_perfdata",
    "parse_plugin_output",
    "parse_range",
    "perfdata_metadata",
    "perfdata_to_samples",
    "sanitize_part",
]
