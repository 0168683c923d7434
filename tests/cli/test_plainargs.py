"""The global options the fast starts read before their command (``cli/plainargs.py``)."""

from __future__ import annotations

import pytest

from signalbox.cli.collect_once import parse_plain
from signalbox.cli.plainargs import leading_options


@pytest.mark.parametrize(
    ("argv", "verbose", "want"),
    [
        (["logs", "grep"], False, (None, 0, 0)),
        (["--config", "a.toml", "logs"], False, ("a.toml", 0, 2)),
        (["--config=a.toml", "logs"], False, ("a.toml", 0, 1)),
        (["--config", "a.toml", "--config=b.toml", "logs"], False, ("b.toml", 0, 3)),
        (["-v", "--config", "a.toml", "-vv", "collect"], True, ("a.toml", 3, 4)),
        (["--verbose", "logs"], True, (None, 1, 1)),
        # anything else is click's to read (and to refuse with its own words)
        (["-v", "logs"], False, None),
        (["--config", "-v", "logs"], True, None),
        (["--config=", "logs"], False, None),
        (["--config"], False, None),
        (["--config", "a.toml"], False, None),
        (["--help", "logs"], False, None),
        ([], False, None),
    ],
)
def test_leading_options(argv: list[str], verbose: bool, want: object) -> None:
    command = "collect" if "collect" in argv else "logs"
    assert leading_options(argv, command, verbose=verbose) == want


def test_collect_once_plain_forms() -> None:
    assert parse_plain(["collect", "--once"]) == (None, 0, False, True)
    assert parse_plain(["--config", "c.toml", "-v", "collect", "--once", "--json"]) == (
        "c.toml",
        1,
        True,
        True,
    )
    assert parse_plain(["collect", "--once", "--no-compact"]) == (None, 0, False, False)
    assert parse_plain(["collect"]) is None
    assert parse_plain(["collect", "--once", "--every", "1m"]) is None
    assert parse_plain(["--config", "-c", "collect", "--once"]) is None
