"""``file``: closed while a file exists -- gh-ost's throttle file, for every queue.

``touch /var/run/signalbox/hold`` holds every job behind the gate within one probe
interval, from any shell, with no store or API at hand (the database is on fire, the
dashboard is slow); ``rm`` releases them. The file's first line, if any, is the reason
shown (``echo "backup of shard 7 running" > hold``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from signalbox.gates.base import Decision, Gate

__all__ = ["FileGate", "file"]

_REASON_MAX = 200


class FileGate(Gate):
    """See :func:`file`."""

    def __init__(
        self, path: str | os.PathLike[str], *, name: str | None = None, **kwargs: Any
    ) -> None:
        self.path = Path(path).expanduser()
        super().__init__(name or f"file:{self.path}", **kwargs)

    def probe(self) -> Decision:
        reading: dict[str, Any] = {"path": str(self.path)}
        try:
            with self.path.open("rb") as f:
                head = f.read(4096)
        except FileNotFoundError:
            return self.opened(f"{self.path} does not exist", {**reading, "exists": False})
        except IsADirectoryError:
            head = b""
        # Exists but unreadable (permissions) still holds: its existence is the signal.
        except OSError as e:
            return self.closed(
                f"throttle file {self.path} exists (unreadable: {e.strerror})",
                {**reading, "exists": True},
            )
        note = head.decode("utf-8", "replace").strip().splitlines()
        text = note[0].strip()[:_REASON_MAX] if note else ""
        why = f": {text}" if text else ""
        return self.closed(
            f"throttle file {self.path} exists{why}", {**reading, "exists": True, "note": text}
        )


def file(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    interval: float | None = None,
    delay: float | None = None,
) -> FileGate:
    """A gate closed while ``path`` exists (its first line, if any, is the reason)."""
    kwargs: dict[str, Any] = {}
    if interval is not None:
        kwargs["interval"] = interval
    if delay is not None:
        kwargs["delay"] = delay
    return FileGate(path, name=name, **kwargs)
