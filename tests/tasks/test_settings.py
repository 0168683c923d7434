"""``[tasks]``: defaults, and errors that name the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from signalbox.config import settings_from_dict
from signalbox.exceptions import ConfigError
from signalbox.tasks.settings import queue_store_url


def load(tasks: dict[str, object], **top: object) -> object:
    return settings_from_dict({"tasks": tasks, **top}, source="signalbox.toml", base_dir=Path("/p"))


def test_defaults_and_where_the_queue_lives() -> None:
    s = settings_from_dict({}, source="(defaults)", base_dir=Path("/p"))
    t = s.tasks
    assert (t.modules, t.queues, t.concurrency, t.retries) == ((), (), 1, 3)
    assert (t.lease_s, t.defer_delay_s, t.defer_max_delay_s, t.durable) == (
        30.0,
        10.0,
        300.0,
        False,
    )
    assert (
        queue_store_url(t, "sqlite:////p/.signalbox/signalbox.db")
        == "sqlite:////p/.signalbox/tasks.db"
    )
    assert queue_store_url(t, "postgresql://db/sb") == "postgresql://db/sb"
    own = load({"store": "sqlite:///q/tasks.db"}).tasks  # type: ignore[attr-defined]
    assert queue_store_url(own, "postgresql://db/sb") == "sqlite:////p/q/tasks.db"


@pytest.mark.parametrize(
    ("tasks", "key", "expected"),
    [
        ({"lease": "soon"}, "tasks.lease", "a duration"),
        ({"lease": "0s"}, "tasks.lease", "a positive duration"),
        ({"queues": ["ok", "no spaces"]}, "tasks.queues[1]", "a queue name"),
        ({"modules": ["my-app.tasks"]}, "tasks.modules[0]", "an import path"),
        ({"concurrency": 0}, "tasks.concurrency", "at least 1"),
        ({"retry_delay": "1m", "retry_max_delay": "10s"}, "tasks.retry_max_delay", "no shorter"),
        ({"store": "redis://x"}, "tasks.store", "sqlite:///PATH or postgresql://"),
        ({"retires": 3}, "tasks.retires", "a known setting in [tasks]"),
    ],
)
def test_a_bad_setting_names_its_key(tasks: dict[str, object], key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(tasks)
    assert e.value.file == "signalbox.toml" and e.value.key == key
    assert expected in e.value.expected
