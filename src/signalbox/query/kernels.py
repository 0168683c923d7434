"""Every range-vector kernel the engine knows, by function name: the windowed ones of
:mod:`signalbox.query.rangefuncs` and the statistics of :mod:`signalbox.query.rangestats`."""

from __future__ import annotations

from signalbox.query import rangefuncs, rangestats
from signalbox.query.rangefuncs import Kernel

KERNELS: dict[str, Kernel] = {**rangefuncs.KERNELS, **rangestats.KERNELS}
