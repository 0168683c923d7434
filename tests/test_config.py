"""signalbox.toml: defaults, lookup order, and errors naming file, key, value and expectation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from signalbox.config import load_settings
from signalbox.exceptions import ConfigError
from signalbox.monitors.notify import LogSpec, WebhookNotifier, WebhookSpec
from signalbox.monitors.notify.registry import BrokenNotifier, build_notifiers


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


# -- per-area settings ------------------------------------------------------------------------


def test_each_area_resolves_its_own_tables(tmp_path: Path) -> None:
    cfg = tmp_path / "signalbox.toml"
    cfg.write_text(
        'host = "web1"\n'
        '[collect]\ninterval = "30s"\nmax_file_bytes = 1024\nstale_after = "25h"\n'
        '[statsd]\nenabled = false\nlisten = "[::1]:9125"\n'
        '[retention]\nraw = "2d"\ntiers = "5m:35d"\n'
        '[server]\nhost = "0.0.0.0"\nport = 9000\n'
        '[monitors]\npaths = ["a", "/abs/b"]\ninterval = "1m"\nrepeat = "2h"\n'
        '[notifiers.ops]\ntype = "log"\nlevel = "error"\n'
    )
    s = load_settings(str(cfg), environ={}, cwd=tmp_path)
    m = s.metrics
    assert (m.interval_s, m.max_file_bytes, m.stale_after_s) == (30.0, 1024, 25 * 3600.0)
    assert (m.statsd.enabled, m.statsd.host, m.statsd.port) == (False, "::1", 9125)
    assert m.retention.raw_s == 2 * 86400 and [str(t) for t in m.retention.tiers] == ["5m:35d"]
    assert (s.server.host, s.server.port) == ("0.0.0.0", 9000)
    assert s.monitors.paths == (tmp_path / "a", Path("/abs/b"))
    assert (s.monitors.interval_s, s.monitors.repeat_s) == (60.0, 7200.0)
    (ops,) = s.monitors.notifiers.values()
    assert isinstance(ops, LogSpec) and (ops.name, ops.level) == ("ops", 40)


def test_settings_are_frozen_all_the_way_down(tmp_path: Path) -> None:
    (tmp_path / "signalbox.toml").write_text('[notifiers.ops]\ntype = "log"\n')
    s = load_settings(None, environ={}, cwd=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.metrics.interval_s = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.monitors.notifiers["x"] = s.monitors.notifiers["ops"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "key", "value", "expected"),
    [
        ("collect = 5\n", "collect", 5, "a table ([collect])"),
        ('colect = "x"\n', "colect", "x", "a known setting at the top level"),
        ('[collect]\nmax_file_bytes = "big"\n', "collect.max_file_bytes", "big", "an integer"),
        ("[collect]\nmax_file_bytes = 0\n", "collect.max_file_bytes", 0, "a positive number"),
        ('[statsd]\nenabled = "yes"\n', "statsd.enabled", "yes", "true or false"),
        ('[monitors]\npaths = ["a", 3]\n', "monitors.paths[1]", 3, "a string"),
        ('[monitors]\npaths = "a"\n', "monitors.paths", "a", "a list of strings"),
        ("[monitors]\nrepeat = 2023-01-01\n", "monitors.repeat", None, "a string"),
        ("host = 7\n", "host", 7, "a string"),
        ("notifiers = 1\n", "notifiers", 1, "a table ([notifiers])"),
        ('[notifiers]\nops = "log"\n', "notifiers.ops", "log", "a table"),
        ('[notifiers.ops]\ntype = "slack"\n', "notifiers.ops.type", "slack", "a notifier type"),
        ('[notifiers.ops]\ntype = "webhook"\n', "notifiers.ops.url", None, "required"),
        (
            '[notifiers.ops]\ntype = "webhook"\nurl = "http://h/"\ntimeout = true\n',
            "notifiers.ops.timeout",
            True,
            "a duration",
        ),
        (
            '[notifiers.ops]\ntype = "log"\nlevle = "info"\n',
            "notifiers.ops.levle",
            "info",
            "a known setting for this notifier type",
        ),
    ],
)
def test_errors_come_from_the_key_the_value_and_its_type(
    tmp_path: Path, text: str, key: str, value: object, expected: str
) -> None:
    cfg = tmp_path / "signalbox.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(str(cfg), environ={}, cwd=tmp_path)
    e = info.value
    assert (e.file, e.key) == (str(cfg), key) and expected in e.expected, e
    if value is not None:
        assert e.value == value


def test_the_spool_dir_and_store_default_beside_the_config_not_the_working_directory(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "conf" / "signalbox.toml"
    cfg.parent.mkdir()
    cfg.write_text('data_dir = "var"\n')
    s = load_settings(str(cfg), environ={}, cwd=tmp_path)
    assert s.data_dir == tmp_path / "conf" / "var"
    assert s.store_url == f"sqlite:///{tmp_path / 'conf' / 'var' / 'signalbox.db'}"
    assert s.metrics.spool_dir == tmp_path / "conf" / ".signalbox" / "spool"


# -- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table",
    [
        'type = "email"\nfrom = "a@example.com"\nto = ["b@example.com"]\npassword = "hunter2"\n',
        'type = "webhook"\nurl = "https://bot:hunter2@hooks.example/T0/hunter2"\ntiemout = 5\n',
        'type = "webhook"\nurl = "ftp://hooks.example/T0/hunter2"\n',
        'type = "webhook"\nurl = "https://hooks.example/"\nheaders = {Authorization = 5}\napi_token = "hunter2"\n',
        'type = "webhook"\nurl = "https://hooks.example/"\nwebhook = "https://hooks.example/hunter2"\n',
        'type = "alertmanager"\nurl = "https://am/"\nheaders = {X = "hunter2\\n"}\n',
    ],
)
def test_a_secret_never_appears_in_a_config_error(tmp_path: Path, table: str) -> None:
    cfg = tmp_path / "signalbox.toml"
    cfg.write_text("[notifiers.pager]\n" + table)
    with pytest.raises(ConfigError) as info:
        load_settings(str(cfg), environ={}, cwd=tmp_path)
    assert "hunter2" not in str(info.value) and "notifiers.pager." in info.value.key


def test_a_secret_never_appears_in_the_settings_repr(tmp_path: Path) -> None:
    (tmp_path / "signalbox.toml").write_text(
        'store = "postgresql://app:hunter2@db.internal/metrics"\n'
        '[notifiers.hook]\ntype = "webhook"\nurl = "https://bot:hunter2@hooks.example/T0/hunter2"\n'
        'headers = {Authorization = "Bearer hunter2"}\n'
        '[notifiers.page]\ntype = "command"\ncommand = ["page", "--token", "hunter2"]\n'
    )
    s = load_settings(None, environ={}, cwd=tmp_path)
    text = repr(s)
    assert "hunter2" not in text
    assert "db.internal" in text and "hooks.example" in text and "page" in text


def test_secrets_from_the_environment_are_read_when_a_notifier_is_built_not_at_load(
    tmp_path: Path,
) -> None:
    """`monitors lint` in CI has no production secrets: the config still loads."""
    (tmp_path / "signalbox.toml").write_text(
        '[notifiers.hook]\ntype = "webhook"\nurl = "https://hooks.example/"\n'
        'headers_from_env = {Authorization = "HOOK_AUTH"}\n'
    )
    s = load_settings(None, environ={}, cwd=tmp_path)
    spec = s.monitors.notifiers["hook"]
    assert isinstance(spec, WebhookSpec) and spec.headers_from_env == (
        ("Authorization", "HOOK_AUTH"),
    )
    built, errors = build_notifiers(s, environ={})
    assert isinstance(built["hook"], BrokenNotifier)
    (e,) = errors
    assert e.key == "notifiers.hook.headers_from_env.Authorization" and "is set" in e.expected
    built, errors = build_notifiers(s, environ={"HOOK_AUTH": "Bearer hunter2"})
    assert errors == [] and isinstance(built["hook"], WebhookNotifier)
    assert "hunter2" not in repr(built["hook"])
