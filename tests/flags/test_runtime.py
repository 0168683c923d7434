"""The process's client: configure() from signalbox.toml settings, the module-level API, groups,
the task gates' source, reset."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalbox import flags
from signalbox.config import settings_from_dict
from signalbox.flags.model import parse_setting
from signalbox.flags.store import open_flag_store
from signalbox.gates import flag
from signalbox.gates.flag import set_flag_source
from tests.stores import sqlite_url


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    flags.reset()


def test_configure_reads_the_declarations_and_store_of_the_settings(tmp_path: Path) -> None:
    (tmp_path / "flags").mkdir()
    (tmp_path / "flags" / "f.yaml").write_text(
        "- {name: beta, description: the beta, default: '0%'}\n"
        "- {name: uploads, description: uploads, default: true}\n"
    )
    url = sqlite_url(tmp_path)
    s = open_flag_store(url)
    s.set("beta", parse_setting("0%", groups=["staff"]), by="ops", reason="staff first", now_ms=0)
    s.close()
    settings = settings_from_dict(
        {"store": url, "flags": {"refresh": "1h"}}, source="t", base_dir=tmp_path
    )
    cache = flags.configure(settings)
    assert flags.current() is cache and cache.refresh_s == 3600
    flags.register_group("staff", lambda actor: str(actor).endswith("@example.com"))
    assert flags.enabled("beta", "ann@example.com") and not flags.enabled("beta", "bob@else.org")
    assert flags.enabled("uploads") and not flags.enabled("not_declared")
    # the task gates ask the same client
    assert flag("uploads", interval=0).check().open
    assert not flag("not_declared", interval=0).check().open
    seen: list[str] = []
    flags.dark("beta", seen.append, "ran", actor="ann@example.com")
    flags.dark("beta", seen.append, "skipped", actor="bob@else.org")
    assert seen == ["ran"]
    flags.reset()
    assert flags.current() is None and set_flag_source(None) is None


def test_a_bad_group_name_is_refused() -> None:
    with pytest.raises(ValueError, match="group"):
        flags.register_group("Staff Members", lambda a: True)


class _Down:
    """A flag store that cannot be read (the database went away)."""

    def states(self) -> dict[str, object]:
        raise OSError("connection refused")

    def close(self) -> None:
        pass


def _spooled(spool: Path) -> dict[str, float]:
    """The one flags spool file's values by series, the ``pid`` label left out."""
    files = sorted(spool.glob("signalbox-flags*.metrics"))
    assert len(files) == 1, files
    out: dict[str, float] = {}
    for line in files[0].read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit("=", 1)
            key = re.sub(r',?pid="\d+"', "", key).replace("{}", "").replace("{,", "{")
            out[key] = float(value)
    return out


def test_the_clients_self_metrics_reach_the_spool_so_an_outage_is_a_series(
    tmp_path: Path,
) -> None:
    """What the app's flags client saw (store reachable, evaluations) is written to a spool
    file of its own after each refresh, and once more when it stops: a collection pass
    stores it like any app metric, so a monitor can page on a store outage an app sees."""
    (tmp_path / "flags").mkdir()
    (tmp_path / "flags" / "f.yaml").write_text(
        "- {name: uploads, description: uploads, default: true}\n"
    )
    url = sqlite_url(tmp_path)
    settings = settings_from_dict(
        {"store": url, "flags": {"refresh": "1h"}}, source="t", base_dir=tmp_path
    )
    spool = settings.metrics.spool_dir
    flags.configure(settings)
    flags.reset()
    assert not spool.exists()  # no spool dir: nothing written, no warning every second
    spool.mkdir(parents=True)
    flags.configure(settings)
    assert flags.enabled("uploads") and flags.enabled("uploads")
    flags.reset()  # stops: the last values written
    got = _spooled(spool)
    assert got["signalbox_flags_store_up"] == 1.0
    assert got['signalbox_flag_evaluations_total{flag="uploads"}'] == 2.0
    for f in spool.glob("signalbox-flags*.metrics"):
        f.unlink()

    flags.configure(settings, store=_Down())  # type: ignore[arg-type]
    assert flags.enabled("uploads")  # the declared default, from memory
    flags.reset()
    got = _spooled(spool)
    assert got["signalbox_flags_store_up"] == 0.0
    assert got["signalbox_flags_refresh_failures_total"] >= 1.0
