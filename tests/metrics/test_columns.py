"""The batch value parser reads every value exactly as ``float`` would, or refuses the lot."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from signalbox.metrics.parse.columns import float_column
from signalbox.metrics.parse.keyvalue import _keyvalue_batch, _keyvalue_lines


def reference(values: list[str]) -> list[float] | None:
    """The rule, spelled out slowly: Python's float, ASCII only, no digit separators."""
    try:
        floats = [float(v) for v in values]
    except ValueError:
        return None
    if any("_" in v or not v.isascii() for v in values):
        return None
    return floats


numbers = (
    st.floats(allow_nan=False).map(repr)
    | st.integers(-(2**80), 2**80).map(str)
    | st.builds(lambda m, e: f"{m}e{e}", st.integers(-(10**20), 10**20), st.integers(-400, 400))
    | st.sampled_from(["-0", "-0.0", "0", "NaN", "+Inf", "-Inf", "1_0", "01", " 7", "5 ", "1,2"])
)
junk = st.text(st.sampled_from("0123456789-+.,eE_ []x\t"), max_size=6)


def same(a: list[float] | None, b: list[float] | None) -> bool:
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or (x == y and math.copysign(1, x) == math.copysign(1, y))
        for x, y in zip(a, b, strict=True)
    )


@given(st.lists(numbers | junk, max_size=8))
def test_float_column_agrees_with_float_value_by_value(values: list[str]) -> None:
    assert same(float_column(values), reference(values))


def test_a_clean_files_repeated_names_and_label_pairs_are_one_object_each() -> None:
    """A million series of one metric with a few shards: one name and one pair per shard
    value in memory, not one per line; what the line parser reads, all the same."""
    text = "".join(f'req{{shard="{i % 3}",line="{i}"}}={i}\n' for i in range(12))
    fast = _keyvalue_batch(text, metas=False)
    assert fast is not None
    assert fast.samples == _keyvalue_lines(text, "f.metrics", metas=False).samples
    assert len({id(s.name) for s in fast.samples}) == 1
    shard_pairs = {id(s.labels[1]) for s in fast.samples}
    assert [s.labels[1] for s in fast.samples[:3]] == [
        ("shard", "0"),
        ("shard", "1"),
        ("shard", "2"),
    ]
    assert len(shard_pairs) == 3
    assert len({id(s.labels[0]) for s in fast.samples}) == 12  # distinct values: own pairs
