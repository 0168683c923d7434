"""Holding CPython's cyclic garbage collector during bulk work that creates no cycles.

A collection pass, a parse of a 100k-line file and a monitor pass each allocate hundreds
of thousands of small objects; with the GC on, every full collection walks all of them
again (a third of the time spent). The previous state is restored, so an application
that disabled GC itself keeps it disabled. Nested uses are fine.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
