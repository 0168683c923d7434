"""Holding CPython's cyclic garbage collector during bulk work that creates no cycles.

A collection pass, a parse of a 100k-line file and a monitor pass each allocate hundreds
of thousands of small objects; with the GC on, every full collection walks all of them
again (a third of the time spent). The pause is process-wide and counted: the collector
comes back when the *last* of the threads holding it is done, never while another query
of ``serve`` still holds millions of objects (a full collection over those holds the GIL for
seconds, and every other thread, ``/-/healthy`` included, waits). An application that
disabled GC itself keeps it disabled. Nested uses are fine.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    global _holders
    with _lock:
        if _holders == 0 and not gc.isenabled():  # disabled by the application: leave it
            mine = False
        else:
            mine = True
            _holders += 1
            gc.disable()
    try:
        yield
    finally:
        if mine:
            with _lock:
                _holders -= 1
                if _holders == 0:
                    gc.enable()
