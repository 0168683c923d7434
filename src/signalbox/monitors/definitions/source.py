"""A monitor's YAML as its author wrote it, for the dashboard: reviewers read the source,
not a re-serialisation that loses comments and order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from signalbox.monitors.definitions.model import Monitor


def monitor_source(m: Monitor, every: Sequence[Monitor], *, max_lines: int = 200) -> str:
    """The lines of ``m``'s file from its own line up to the next monitor of that file (or
    the end), trailing blank lines dropped; empty when the file cannot be read. ``every``
    is what was loaded with it (its neighbours give where its text ends)."""
    if not m.file or m.line < 1:
        return ""
    try:
        lines = Path(m.file).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    after = [o.line for o in every if o.file == m.file and o.line > m.line]
    end = min(after) - 1 if after else len(lines)
    block = lines[m.line - 1 : min(end, m.line - 1 + max_lines)]
    while block and not block[-1].strip():
        block.pop()
    return "\n".join(block)
