"""signalbox.toml: defaults, lookup order, and errors naming file, key, value and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from signalbox.config import load_settings
from signalbox.exceptions import ConfigError


def test_missing_file_means_all_defaults(tmp_path: Path) -> None:
    s = load_settings(None, environ={}, cwd=tmp_path)
    assert s.source == "(defaults)"
    assert s.store_url == f"sqlite:///{tmp_path / '.signalbox' / 'signalbox.db'}"
    assert s.metrics.spool_dir == tmp_path / ".signalbox" / "spool"
    assert (s.metrics.interval_s, s.server.host, s.server.port) == (15.0, "127.0.0.1", 8910)
    assert [str(t) for t in s.metrics.retention.tiers] == ["1m:8d", "5m:35d", "1h:400d"]


def test_lookup_order_explicit_then_env_then_cwd(tmp_path: Path) -> None:
    (tmp_path / "signalbox.toml").write_text('host = "cwd"\n')
    env_file = tmp_path / "env.toml"
    env_file.write_text('host = "env"\n')
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('host = "explicit"\n')
    assert load_settings(None, environ={}, cwd=tmp_path).host == "cwd"
    assert (
        load_settings(None, environ={"SIGNALBOX_CONFIG": str(env_file)}, cwd=tmp_path).host == "env"
    )
    assert (
        load_settings(str(explicit), environ={"SIGNALBOX_CONFIG": str(env_file)}, cwd=tmp_path).host
        == "explicit"
    )


def test_host_env_overrides_file(tmp_path: Path) -> None:
    (tmp_path / "signalbox.toml").write_text('host = "file"\n')
    assert load_settings(None, environ={"SIGNALBOX_HOST": "web9"}, cwd=tmp_path).host == "web9"


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "signalbox.toml"
    cfg.parent.mkdir()
    cfg.write_text('store = "sqlite:///data/x.db"\n[collect]\nspool_dir = "sp"\n')
    s = load_settings(str(cfg), environ={}, cwd=tmp_path)
    assert s.store_url == f"sqlite:///{tmp_path / 'conf' / 'data' / 'x.db'}"
    assert s.metrics.spool_dir == tmp_path / "conf" / "sp"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('[server]\nport = "x"\n', "server.port", "an integer"),
        ("[server]\nport = 70000\n", "server.port", "a TCP port"),
        ('[collect]\nintervl = "1s"\n', "collect.intervl", "a known setting"),
        ('[collect]\ninterval = "soon"\n', "collect.interval", "a duration"),
        ('[retention]\ntiers = "5m:1d,1m:8d"\n', "retention.tiers", "tiers like"),
        ('[retention]\nraw = "1m"\n', "retention.raw", "at least two buckets"),
        ('store = "mysql://x"\n', "store", "sqlite:///PATH or postgresql"),
        ('[statsd]\nlisten = "nowhere"\n', "statsd.listen", "HOST:PORT"),
        ("[notifiers.ops]\nurl = 'x'\n", "notifiers.ops.type", "a notifier type"),
        ("this is = = not toml", "(syntax)", "valid TOML"),
    ],
)
def test_errors_name_file_key_value_and_expectation(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    cfg = tmp_path / "signalbox.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(str(cfg), environ={}, cwd=tmp_path)
    e = info.value
    assert e.file == str(cfg) and e.key == key and expected in e.expected
    assert str(cfg) in str(e) and key in str(e)


def test_explicit_missing_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"an existing signalbox\.toml"):
        load_settings(str(tmp_path / "nope.toml"), environ={}, cwd=tmp_path)
