"""``flag``: open while a feature flag is on -- ops turn a flag off to hold the work.

Until signalbox's flag store lands, flags are read from the flag definition files that
``signalbox init`` writes: YAML lists under ``flags/`` beside ``signalbox.toml``::

    - name: photo_reprocessing
      description: Reprocess old photos in the background.
      default: true        # true/false, or "on"/"off"

The gate is open while the flag's value is ``true``/``"on"`` (a percentage other than
``100%`` is not fully on, so it holds). A flag that is not defined anywhere, or a file
that cannot be read, closes the gate (fail closed). The files are re-read at each probe,
so editing one takes effect within the probe interval.

This is replaceable without touching the gates: :func:`set_flag_source` installs a function
``name -> bool | None`` (None: unknown flag) that every flag gate asks instead -- the flags
package installs its in-memory cache there.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signalbox.gates.base import Decision, Gate

if TYPE_CHECKING:
    from signalbox.config import Settings

__all__ = ["FlagGate", "FlagSource", "flag", "flag_value", "set_flag_source"]

FlagSource = Callable[[str], "bool | None"]

_source_lock = threading.Lock()
_source: FlagSource | None = None


def set_flag_source(source: FlagSource | None) -> FlagSource | None:
    """Install the process-wide flag source (None: back to the files); returns the old one."""
    global _source
    with _source_lock:
        old, _source = _source, source
    return old


_ON = {"on", "true", "yes", "100%"}
_OFF = {"off", "false", "no", "0%"}


def _truth(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _ON:
            return True
        if v in _OFF or v.endswith("%"):
            return False
    return None


def flag_value(name: str, path: Path) -> tuple[bool | None, str]:
    """``(value, where)`` of flag ``name`` in the YAML file or folder ``path`` (value None:
    not defined). Raises ValueError for a file that is not a list of flags, OSError for one
    that cannot be read."""
    import yaml

    files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
    if not path.exists():
        raise FileNotFoundError(f"no flag files at {path}")
    for f in files:
        doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        if doc is None:
            continue
        if not isinstance(doc, list):
            raise ValueError(f"{f}: expected a list of flags (- name: ..., default: ...)")
        for item in doc:
            if isinstance(item, dict) and item.get("name") == name:
                value = _truth(item.get("default"))
                if value is None:
                    raise ValueError(
                        f"{f}: flag {name}: default must be true/false or on/off, got "
                        f"{item.get('default')!r}"
                    )
                return value, str(f)
    return None, str(path)


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
        if self._path is None:
            if self._settings is None:
                from signalbox.config import load_settings

                self._settings = load_settings()
            self._path = self._settings.base_dir / "flags"
        return self._path

    def probe(self) -> Decision:
        f = self.flag_name
        source = _source
        if source is not None:
            value, where = source(f), "flag store"
        else:
            value, where = flag_value(f, self._flags_path())
        reading: dict[str, Any] = {"flag": f, "on": value, "source": where}
        if value is None:
            return self.closed(f"flag {f} is not defined ({where})", reading)
        if value:
            return self.opened(f"flag {f} is on", reading)
        return self.closed(f"flag {f} is off ({where})", reading)


def flag(
    flag_name: str,
    *,
    path: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
    name: str | None = None,
    interval: float | None = None,
    delay: float | None = None,
) -> FlagGate:
    """A gate open while flag ``flag_name`` is on.

    Args:
        path: a flags YAML file or folder (default: ``flags/`` beside the ``signalbox.toml``
            in use); ignored once a flag source is installed (:func:`set_flag_source`).
    """
    kwargs: dict[str, Any] = {}
    if interval is not None:
        kwargs["interval"] = interval
    if delay is not None:
        kwargs["delay"] = delay
    return FlagGate(flag_name, path=path, settings=settings, name=name, **kwargs)
