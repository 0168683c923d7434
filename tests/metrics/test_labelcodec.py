"""The series table's label text: decoding gives back exactly what was encoded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from signalbox.metrics.labelcodec import decode_labels, encode_labels

names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True)
# values full of what the text format quotes or splits on
values = st.text(alphabet=st.sampled_from('ab=",\\\n{}x '), max_size=8)


@given(st.dictionaries(names, values, max_size=5))
def test_decode_inverts_encode(labels: dict[str, str]) -> None:
    ls = tuple(sorted(labels.items()))
    assert decode_labels(encode_labels(ls)) == ls


def test_the_fast_and_the_escaped_paths_agree_on_plain_sets() -> None:
    plain = (("file", "12"), ("host", "vm"), ("shard", ""), ("x", "a=b,c"))
    assert decode_labels(encode_labels(plain)) == plain
    escaped = (("a", 'say "hi"'), ("b", "back\\slash"), ("c", "two\nlines"), ("d", '",e="'))
    assert decode_labels(encode_labels(escaped)) == escaped
    assert decode_labels("") == ()
