"""Help-less metadata records made column-wise (``lex.new_metas``, what a first pass of a
million ``*.prom`` names makes) are the dataclass's own records in every respect."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.metrics.parse.lex import new_metas, plain_metas
from signalbox.metrics.samples import METRIC_TYPES, MetricMeta


@given(names=st.lists(st.text(max_size=5), max_size=20), kind=st.sampled_from(sorted(METRIC_TYPES)))
def test_column_made_records_equal_the_constructors(names: list[str], kind: str) -> None:
    made = new_metas(names, kind)  # type: ignore[arg-type]
    want = [MetricMeta(n, kind) for n in names]  # type: ignore[arg-type]
    assert made == want
    assert [hash(m) for m in made] == [hash(m) for m in want]
    assert [dataclasses.astuple(m) for m in made] == [dataclasses.astuple(m) for m in want]
    assert [repr(m) for m in made] == [repr(m) for m in want]


def test_they_stay_frozen_and_are_memoized() -> None:
    (meta,) = new_metas(["m"], "untyped")
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.name = "x"  # type: ignore[misc]
    first = plain_metas(["nm_a", "nm_b"], "untyped")
    again = plain_metas(["nm_b", "nm_c", "nm_a"], "untyped")
    assert again[0] is first[1] and again[2] is first[0]
    assert again[1] == MetricMeta("nm_c", "untyped")
