"""The process's flags client: global state in one place, with a reset for tests.

:func:`configure` builds a :class:`~signalbox.flags.cache.FlagCache` from ``signalbox.toml``
(declarations from ``[flags] paths``, state from the configured store, refreshed every
``[flags] refresh`` and, unless ``[flags] listen = false``, as soon as the store announces a
change), installs it as the task gates' flag source, and starts its refresh.
An app calls it once at startup; a process that evaluates a flag without having called it
gets one configured from the default config in the background (the first answers, until it
is ready, are off: say ``flags.configure()`` at startup to avoid that window).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from signalbox.flags.cache import FlagCache

if TYPE_CHECKING:
    from pathlib import Path

    from signalbox.config import Settings
    from signalbox.flags.store import FlagStore
    from signalbox.metrics.samples import Sample

__all__ = [
    "configure",
    "current",
    "dark",
    "enabled",
    "override_settings",
    "register_group",
    "reset",
]

log = logging.getLogger("signalbox.flags")

_lock = threading.Lock()
_cache: FlagCache | None = None
_auto_started = False
_groups: dict[str, Callable[[object], bool]] = {}


def configure(
    settings: Settings | None = None,
    *,
    store: FlagStore | None = None,
    start: bool = True,
    gate_source: bool = True,
    metrics: bool = True,
) -> FlagCache:
    """Build, install and start the process's flags client (replacing any earlier one).

    Args:
        settings: default: :func:`signalbox.config.load_settings`.
        store: default: the configured store (``store`` of ``signalbox.toml``).
        gate_source: make ``gates.flag(name)`` ask this client.
        metrics: write the client's self-metrics (store reachable, state age, evaluations,
            dark launches: :data:`signalbox.flags.cache.METAS`) after every refresh into a
            spool file of this process's own in the configured spool dir (when it exists),
            so a store outage seen by an app is a series a monitor can watch.
    """
    global _cache
    from signalbox.config import load_settings
    from signalbox.flags.declarations import load_declarations

    s = settings or load_settings()
    decls = load_declarations(list(s.flags.paths), code=())
    for err in decls.errors:
        log.error("flag declaration: %s", err)
    opener: FlagStore | Callable[[], FlagStore]
    if store is not None:
        opener = store
    else:
        url = s.store_url

        def opener() -> FlagStore:
            from signalbox.flags.store import open_flag_store

            return open_flag_store(url)

    cache = FlagCache(
        opener,
        decls.flags,
        refresh_s=s.flags.refresh_s,
        listen=s.flags.listen,
        groups=_groups,
        override=s.flags.override,
        override_param=s.flags.override_param,
        override_header=s.flags.override_header,
    )
    if metrics and s.metrics.spool_dir.is_dir():  # no spool here: no collector to read it
        cache.publish = _SpoolPublisher(s.metrics.spool_dir)
    with _lock:
        old, _cache = _cache, cache
        _publish(cache)
    if old is not None:
        old.stop()
    if gate_source:
        from signalbox.gates.flag import set_flag_source

        set_flag_source(cache.gate_source)
    if start:
        cache.start()
    return cache


class _SpoolPublisher:
    """Self-metrics as gauges of a metrics client of their own (its own spool file, never
    mixed into the app's, whatever the app configured); closed with the flags client."""

    def __init__(self, spool_dir: Path) -> None:
        from signalbox.metrics.client import Client

        self.client = Client(spool_dir, prog="signalbox-flags")

    def __call__(self, samples: list[Sample]) -> None:
        for x in samples:
            self.client.gauge(x.name, x.value, **dict(x.labels))

    def close(self) -> None:
        self.client.close()


def install(cache: FlagCache | None) -> FlagCache | None:
    """Make ``cache`` the process's client (tests, ``signalbox.testing``); returns the old."""
    global _cache
    with _lock:
        old, _cache = _cache, cache
        _publish(cache)
    return old


def _publish(cache: FlagCache | None) -> None:
    global _enabled
    _enabled = _unconfigured if cache is None else cache.enabled


def current() -> FlagCache | None:
    return _cache


def reset() -> None:
    """Stop and forget the process's client and groups (tests)."""
    global _cache, _auto_started
    with _lock:
        old, _cache, _auto_started = _cache, None, False
        _publish(None)
        _groups.clear()
    if old is not None:
        old.stop()
        from signalbox.gates.flag import set_flag_source

        set_flag_source(None)


def _auto() -> bool:
    global _auto_started
    with _lock:
        if _auto_started:
            return False
        _auto_started = True

    def run() -> None:
        try:
            configure()
        except Exception as e:
            log.error(
                "flags could not be configured from signalbox.toml (%s): every flag is off", e
            )

    threading.Thread(target=run, name="signalbox-flags-configure", daemon=True).start()
    log.warning(
        "flags evaluated before signalbox.flags.configure(): configuring from signalbox.toml "
        "in the background; flags are off until then"
    )
    return False


def _unconfigured(name: str, actor: object = None) -> bool:
    return _auto()


_enabled: Callable[[str, object], bool] = _unconfigured  # the installed cache's hot path


def enabled(name: str, actor: object = None) -> bool:
    """Whether flag ``name`` is on for ``actor`` (a user id, a ``str``/``int``, or an object
    with ``flag_id``). From memory; never raises, never waits for I/O."""
    return _enabled(name, actor)


def dark(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Dark-launch ``fn`` for the share of actors ``name`` is rolled out to (see
    :meth:`FlagCache.dark`: ``actor=``, ``control=``, ``compare=``); never raises."""
    c = _cache
    if c is None:
        _auto()
        return
    c.dark(name, fn, *args, **kwargs)


def register_group(name: str, predicate: Callable[[object], bool]) -> None:
    """``flags set NAME ... --groups name`` turns the flag on for actors ``predicate``
    accepts (an exception in it counts as "no")."""
    from signalbox.flags.model import check_group

    check_group(name, "group")
    _groups[name] = predicate


def override_settings() -> tuple[bool, str, str]:
    """Whether the staff override is on, its query parameter and its header (from the
    installed client; off when none is installed)."""
    c = _cache
    if c is None:
        return False, "features", "X-Signalbox-Features"
    return c.override, c.override_param, c.override_header
