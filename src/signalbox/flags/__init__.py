"""Feature flags: declared in ``flags/*.yaml`` or code, switched at run time through the store.

::

    from signalbox import flags

    flags.configure()                               # once, at startup
    if flags.enabled("new_checkout", actor=user.id):
        ...
    flags.dark("search_v2", search_v2, query, actor=user.id, control=results)

Evaluation is in memory (:mod:`signalbox.flags.cache`), gates combine as Flipper's
(:mod:`signalbox.flags.evaluate`, where the sticky bucket hash is documented), state and
audit live in the store (:mod:`signalbox.flags.store`), and a request's evaluations and
the staff override are :mod:`signalbox.flags.context`'s.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signalbox.flags.context import begin_request, end_request, evaluated, mark_staff
    from signalbox.flags.declarations import declare
    from signalbox.flags.runtime import (
        configure,
        current,
        dark,
        enabled,
        register_group,
        reset,
    )

# ``signalbox.config`` imports ``signalbox.flags.settings``, so this package's own import
# stays light: the public names load on first use (then they are plain attributes).
_WHERE = {
    "begin_request": "signalbox.flags.context",
    "end_request": "signalbox.flags.context",
    "evaluated": "signalbox.flags.context",
    "mark_staff": "signalbox.flags.context",
    "declare": "signalbox.flags.declarations",
    "configure": "signalbox.flags.runtime",
    "current": "signalbox.flags.runtime",
    "dark": "signalbox.flags.runtime",
    "enabled": "signalbox.flags.runtime",
    "register_group": "signalbox.flags.runtime",
    "reset": "signalbox.flags.runtime",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'signalbox.flags' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "begin_request",
    "configure",
    "current",
    "dark",
    "declare",
    "enabled",
    "end_request",
    "evaluated",
    "mark_staff",
    "register_group",
    "reset",
]
