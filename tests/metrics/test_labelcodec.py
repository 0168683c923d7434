"""The series table's label text: decoding gives back exactly what was encoded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from signalbox.metrics.labelcodec import decode_labels, encode_labels, series_texts
from signalbox.metrics.samples import merge_labels

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


label_sets = st.lists(
    st.one_of(
        st.dictionaries(names, values, max_size=4).map(lambda d: tuple(sorted(d.items()))),
        st.lists(st.tuples(names, values), max_size=3).map(tuple),  # unsorted, repeated
        st.tuples(st.just("shard"), values).map(lambda p: (("file", "1"), p)),  # one shape
    ),
    max_size=12,
)
adds = st.one_of(
    st.just((("host", "vm"),)),
    st.dictionaries(
        names, st.text(alphabet=st.sampled_from('a"{}\\\n='), max_size=4), max_size=2
    ).map(lambda d: tuple(sorted(d.items()))),
)


@given(label_sets, adds)
def test_series_texts_are_each_sets_encoding(
    sets: list[tuple[tuple[str, str], ...]], add: tuple[tuple[str, str], ...]
) -> None:
    got = series_texts(set(sets), add)
    assert got == {ls: "{" + encode_labels(merge_labels(ls, add)) for ls in set(sets)}
