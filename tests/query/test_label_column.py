"""The value of one label read column-wise from many label texts
(:func:`signalbox.query.columnar._label_column`, what ``sum by (shard)`` groups by) is the
value :func:`decode_labels` finds in each text, whatever the texts hold: empty label sets,
empty values, values that look like the label (``x="shard=\\"1\\""``), commas, equals
signs, quotes, backslashes and newlines (escaped), unicode."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.metrics.labelcodec import decode_labels, encode_labels
from signalbox.query.columnar import _label_column

_NAMES = st.sampled_from(["a", "instance", "shard", "shard2", "sh", "z", "x_y"])
_VALUES = st.one_of(
    st.text(alphabet=string.printable + "é☃", max_size=8),
    st.sampled_from(['shard="1"', "shard=", ',shard="2",', "=", ",", '\\"', "1"]),
)
_SETS = st.dictionaries(_NAMES, _VALUES, max_size=5).map(lambda d: tuple(sorted(d.items())))


def _expected(label: str, text: str) -> str:
    v = dict(decode_labels(text)).get(label)
    return "" if v is None else v + '"'


@settings(max_examples=300, deadline=None)
@given(st.lists(_SETS, max_size=30), st.sampled_from(["shard", "a", "z", "sh"]))
def test_a_label_read_column_wise_is_the_decoded_value(sets: list, label: str) -> None:
    texts = [encode_labels(s) for s in sets]
    assert _label_column(label, texts) == [_expected(label, t) for t in texts]


def test_lines_without_the_label_empty_sets_and_empty_values_keep_their_places() -> None:
    texts = ["", 'a="1",shard="3"', "", 'shard=""', 'a="shard=",b="2"', 'b="x",shard="4"', ""]
    assert _label_column("shard", texts) == ["", '3"', "", '"', "", '4"', ""]
