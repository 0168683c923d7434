"""Say so when the spool dir is missing, instead of collecting nothing from files silently.

A missing spool dir is most often a wrong ``[collect] spool_dir`` (or a run from another
folder): apps write their files elsewhere and every pass finds nothing. Nothing failed, so
``collect --once`` keeps its exit code; the warning names the path and the fix. ``serve``
creates the dir (as it always has) and says it did, once at start, not every pass.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["check_spool_dir", "ensure_spool_dir"]


def check_spool_dir(path: Path) -> str | None:
    """A warning when ``path`` does not exist; None when it does (problems listing an
    existing dir are the scan's to report)."""
    if path.exists():
        return None
    return (
        f"spool dir {path} does not exist: no spool files are collected. Create it "
        f"(`signalbox init` does, or mkdir -p {path}), or set [collect] spool_dir to where "
        "your apps write their files"
    )


def ensure_spool_dir(path: Path) -> str | None:
    """Create ``path`` when it is missing; a warning saying so, or None when it existed.

    Raises:
        OSError: it cannot be created.
    """
    if path.exists():
        return None
    path.mkdir(parents=True, exist_ok=True)
    return (
        f"spool dir {path} did not exist: created it, empty. If your apps write their files "
        "elsewhere, set [collect] spool_dir"
    )
