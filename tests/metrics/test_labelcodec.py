"""The series table's label text: decoding gives back exactly what was encoded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from signalbox.metrics.labelcodec import decode_labels, encode_labels, series_keys
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


@given(label_sets, adds, st.sampled_from(["m", "n{x}", 'a"b']))
def test_series_keys_are_each_sets_name_and_encoding(
    sets: list[tuple[tuple[str, str], ...]], add: tuple[tuple[str, str], ...], name: str
) -> None:
    names = [name if i % 3 else name + str(i) for i in range(len(sets))]
    got = series_keys(names, sets, add)
    assert got == [
        n + "{" + encode_labels(merge_labels(ls, add)) for n, ls in zip(names, sets, strict=True)
    ]


def test_series_keys_of_many_shapes_and_chunks_keep_their_order() -> None:
    """Chunks of mixed shapes (each taken apart on its own), past the number of shapes a
    chunk takes apart in C, braces in label names, values to escape among plain ones."""
    sets = [
        ()
        if i % 11 == 0
        else ((f"k{i % 40}", str(i)),)
        if i % 5
        else (("a{b}", "1"), ("file", 'x"y' if i % 2 else str(i)))
        for i in range(300)
    ]
    names = [f"m{i % 3}" for i in range(300)]
    for add in ((("host", "h"),), (), (("file", "never"), ("z", "{0}"))):
        want = [
            n + "{" + encode_labels(merge_labels(ls, add))
            for n, ls in zip(names, sets, strict=True)
        ]
        assert series_keys(names, sets, add) == want
        assert series_keys(names, sets, add, chunk=7) == want
        assert series_keys(names, sets, add, chunk=50, max_shapes=2) == want
