"""Arguments are JSON, checked at enqueue: a value JSON would change or cannot carry is
refused there, naming the task and the value's path; stored rows decode back exactly."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pytest

from signalbox.exceptions import JobArgumentError
from signalbox.tasks.jobs import decode_args, encode_args, unique_key


@pytest.mark.parametrize(
    ("args", "kwargs", "where", "why"),
    [
        ((datetime(2024, 1, 1),), {}, "args[0]", "a datetime is not JSON"),
        (((1, 2),), {}, "args[0]", "a tuple would arrive as a list"),
        (({1, 2},), {}, "args[0]", "a set is not JSON"),
        ((b"raw",), {}, "args[0]", "a bytes is not JSON"),
        ((math.nan,), {}, "args[0]", "has no JSON form"),
        ((), {"opts": {"when": [1, object()]}}, "opts['when'][1]", "a object is not JSON"),
        ((), {"m": {1: "x"}}, "m", "dict key 1 is a int"),
    ],
)
def test_a_value_json_would_not_carry_unchanged_is_refused_at_enqueue(
    args: tuple[Any, ...], kwargs: dict[str, Any], where: str, why: str
) -> None:
    with pytest.raises(JobArgumentError) as e:
        encode_args("photos.resize", args, kwargs)
    assert e.value.task == "photos.resize" and e.value.where == where
    assert why in str(e.value) and str(e.value).startswith("task photos.resize: argument ")


def test_json_values_travel_unchanged() -> None:
    args = [1, -2.5, "é", None, True, [1, [2, {"a": None}]]]
    kwargs = {"opts": {"x": [], "y": {}}}
    assert decode_args(encode_args("t", args, kwargs)) == (args, kwargs)
    assert decode_args(encode_args("t", [], {})) == ([], {})


@pytest.mark.parametrize("row", ["", "{", "[]", '{"a": 1}', "[1]", "[[1], [2]]", "[[1],{},3]"])
def test_a_corrupt_row_is_a_clear_error(row: str) -> None:
    with pytest.raises(ValueError, match="stored arguments"):
        decode_args(row)


def test_unique_key_ignores_dict_key_order_only() -> None:
    assert unique_key("t", [1], {"a": 1, "b": 2}) == unique_key("t", [1], {"b": 2, "a": 1})
    assert unique_key("t", [1], {}) != unique_key("t", [2], {})
    assert unique_key("t", [1], {}) != unique_key("u", [1], {})
