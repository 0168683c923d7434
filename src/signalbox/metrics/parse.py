"""Pure parsers for the two spool file formats: ``*.metrics`` (key=value) and ``*.prom``.

Both take the whole decoded text of one file and return every good sample *and* one
:class:`LineError` per bad line, so one typo never costs the rest of the file. Nothing
here does I/O or reads the clock: the spool collector decodes (``errors="replace"``),
decides what "now" is and what to do with the errors.

This module is the stable import point; the code lives in one module per concept:
:mod:`~signalbox.metrics.lex` (result records, rules shared by both formats, label
sets), :mod:`~signalbox.metrics.keyvalue` (``*.metrics``),
:mod:`~signalbox.metrics.promtext` (``*.prom``) and :mod:`~signalbox.metrics.columns`
(the fast path both take for clean files).
"""

from __future__ import annotations

from signalbox.metrics.keyvalue import parse_keyvalue
from signalbox.metrics.lex import (
    EXCERPT_CHARS,
    LABEL_RULE,
    NAME_RULE,
    LineError,
    Parsed,
    blank_split,
    control_char_reason,
    excerpt,
    fast_labels,
    parse_float,
    parse_int_ms,
    scan_labels,
    show,
    split_lines,
)
from signalbox.metrics.promtext import parse_prometheus

__all__ = [
    "EXCERPT_CHARS",
    "LABEL_RULE",
    "NAME_RULE",
    "LineError",
    "Parsed",
    "blank_split",
    "control_char_reason",
    "excerpt",
    "fast_labels",
    "parse_float",
    "parse_int_ms",
    "parse_keyvalue",
    "parse_prometheus",
    "scan_labels",
    "show",
    "split_lines",
]
