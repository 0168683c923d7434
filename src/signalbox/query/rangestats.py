"""Range-vector statistics: ``changes``, ``resets``, ``idelta``, ``predict_linear``,
``stddev_over_time``, ``stdvar_over_time``, ``mad_over_time``."""

from __future__ import annotations

from signalbox.query.rangefuncs import Kernel

KERNELS: dict[str, Kernel] = {}
