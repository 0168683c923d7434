"""What a backtest is asked to do, as plain data: the CLI and the dashboard fill in the same.

A :class:`BacktestRequest` says which file(s), which monitors and which window; the pure
helpers here turn it into the steps to evaluate (:func:`window`) and the monitors to
replay (:func:`choose`), so :func:`signalbox.monitors.backtest.run` only adds the I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from signalbox.exceptions import UsageError
from signalbox.monitors.definitions.model import Monitor

__all__ = ["BacktestRequest", "UnknownMonitors", "Window", "choose", "window"]

WEEK_S = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class BacktestRequest:
    """Replay the monitors of ``file`` over the ``since_s`` seconds up to ``until_ms``.

    ``against`` names another file (e.g. the version on main) whose monitors of the same
    names are replayed beside them: old = ``against``, new = ``file``. ``names`` keeps only
    those monitors (each must be defined in one of the files). ``step_s`` None means the
    finest step the store can answer for the window; ``until_ms`` None means now by the
    store's clock.

    Raises:
        UsageError: ``since_s`` or ``step_s`` is not a positive number of seconds.
    """

    file: Path
    since_s: float = WEEK_S
    until_ms: int | None = None
    against: Path | None = None
    names: tuple[str, ...] = ()
    step_s: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.since_s) and self.since_s > 0):
            raise UsageError(
                f"since_s: expected a positive number of seconds, got {self.since_s!r}"
            )
        if self.step_s is not None and not (math.isfinite(self.step_s) and self.step_s > 0):
            raise UsageError(f"step_s: expected a positive number of seconds, got {self.step_s!r}")
        # a list given by a caller still makes a hashable, frozen request
        object.__setattr__(self, "names", tuple(self.names))


@dataclass(frozen=True, slots=True)
class Window:
    """The evaluation steps: every ``step_ms`` from ``start_ms`` through ``end_ms``."""

    start_ms: int
    end_ms: int
    step_ms: int


def window(since_s: float, step_s: float, until_ms: int) -> Window:
    """Steps aligned to multiples of the step (as the runner's evaluations would be), ending
    at or just before ``until_ms`` and reaching ``since_s`` back."""
    step_ms = max(1, round(step_s * 1000))
    end_ms = until_ms // step_ms * step_ms
    start_ms = end_ms - round(since_s * 1000) // step_ms * step_ms
    return Window(start_ms, end_ms, step_ms)


class UnknownMonitors(UsageError):
    """``names`` asked for monitors that neither file defines."""

    def __init__(self, names: Sequence[str], known: Sequence[str], files: Sequence[Path]) -> None:
        self.names, self.known, self.files = tuple(names), tuple(known), tuple(files)
        super().__init__(
            f"monitor {', '.join(self.names)}: not defined in "
            + " or ".join(str(f) for f in self.files)
            + f" (monitors: {', '.join(self.known) or 'none'})"
        )


def choose(
    request: BacktestRequest, new: Sequence[Monitor], old: Sequence[Monitor]
) -> tuple[list[Monitor], list[Monitor]]:
    """The monitors to replay from ``file`` (new) and ``against`` (old).

    With ``names``, only those (an unknown name is an error); otherwise every monitor of
    ``file``, and of ``against`` only those that ``file`` also defines: the comparison is
    about the monitors being changed.

    Raises:
        UnknownMonitors: a name in ``request.names`` is in neither file.
    """
    if request.names:
        known = sorted({m.name for m in [*new, *old]})
        unknown = [n for n in request.names if n not in known]
        if unknown:
            files = [request.file, *([request.against] if request.against else [])]
            raise UnknownMonitors(unknown, known, files)
        return (
            [m for m in new if m.name in request.names],
            [m for m in old if m.name in request.names],
        )
    wanted = {m.name for m in new}
    return list(new), [m for m in old if m.name in wanted]
