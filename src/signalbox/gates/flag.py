"""``flag``: open while a feature flag is on -- ops turn a flag off to hold the work.

The gate asks the process's flags client (:mod:`signalbox.flags`): the flag's state in the
store (``signalbox flags set reprocessing off --reason ...``), else its declared default in
``flags/*.yaml``, refreshed every ``[flags] refresh``. A worker that has not configured
flags gets the client configured at the gate's first probe, from the gate's settings (its
``path``, when given, is where the declarations are read). The gate is open while the flag
is on for a call without an actor: switched ``on``, or rolled out to 100%; a partial rollout
holds the work. A flag declared nowhere closes the gate (fail closed), and so does a flag
switched ``off``: the jobs behind it are deferred, never failed, until it is on again.

:func:`set_flag_source` installs a function ``name -> bool | None`` (None: unknown flag)
that every flag gate asks instead (:func:`signalbox.flags.configure` installs its cache
there; tests install their own).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signalbox.gates.base import Decision, Gate

if TYPE_CHECKING:
    from signalbox.config import Settings

__all__ = ["FlagGate", "FlagSource", "flag", "set_flag_source"]

FlagSource = Callable[[str], "bool | None"]

_source_lock = threading.Lock()
_source: FlagSource | None = None


def set_flag_source(source: FlagSource | None) -> FlagSource | None:
    """Install the process-wide flag source (None: the flags client, configured on first
    use); returns the old one."""
    global _source
    with _source_lock:
        old, _source = _source, source
    return old


_configure_lock = threading.Lock()


class FlagGate(Gate):
    """See :func:`flag`."""

    def __init__(
        self,
        flag_name: str,
        *,
        path: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not flag_name:
            raise ValueError("flag() needs the flag's name")
        super().__init__(name or f"flag:{flag_name}", **kwargs)
        self.flag_name = flag_name
        self._path = Path(path).expanduser() if path is not None else None
        self._settings = settings

    def _flags_path(self) -> Path:
        """Where this gate's flag declarations are read (when it configures the client)."""
        if self._path is None:
            paths = self._load_settings().flags.paths
            return paths[0] if paths else self._load_settings().base_dir / "flags"
        return self._path

    def _load_settings(self) -> Settings:
        if self._settings is None:
            from signalbox.config import load_settings

            self._settings = load_settings()
        return self._settings

    def _ask(self) -> FlagSource:
        source = _source
        if source is not None:
            return source
        from signalbox.flags import runtime

        with _configure_lock:
            cache = runtime.current()
            if cache is None:
                s = self._load_settings()
                if self._path is not None and s.flags.paths != (self._path,):
                    s = dataclasses.replace(
                        s, flags=dataclasses.replace(s.flags, paths=(self._path,))
                    )
                # a worker's or serve's own client: no spool file of its own (their gates'
                # decisions are metrics already, and serve's demo spool holds only the app's)
                cache = runtime.configure(s, metrics=False)
        return cache.gate_source

    def probe(self) -> Decision:
        f = self.flag_name
        value = self._ask()(f)
        reading: dict[str, Any] = {"flag": f, "on": value}
        if value is None:
            return self.closed(f"flag {f} is not declared (in flags/*.yaml or code)", reading)
        if value:
            return self.opened(f"flag {f} is on", reading)
        return self.closed(f"flag {f} is off", reading)


def flag(
    flag_name: str,
    *,
    path: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
    name: str | None = None,
    interval: float | None = None,
    delay: float | None = None,
) -> FlagGate:
    """A gate open while flag ``flag_name`` is on (see the module docstring).

    Args:
        path: a flags YAML file or folder to read declarations from when this gate configures
            the process's flags client (default: ``[flags] paths`` of the settings).
        settings: whose store holds the flags (default: the ``signalbox.toml`` in use).
    """
    kwargs: dict[str, Any] = {}
    if interval is not None:
        kwargs["interval"] = interval
    if delay is not None:
        kwargs["delay"] = delay
    return FlagGate(flag_name, path=path, settings=settings, name=name, **kwargs)
