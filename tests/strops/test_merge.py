"""strops from Python: the seed's examples, the alignment API, input checking and properties."""

import string
import threading
import time

import pytest
import strops
from hypothesis import given
from hypothesis import strategies as st


def test_seed_examples() -> None:
    prev = ["The", "quick", "brown", "fox"]
    assert strops.merge_by_overlap(prev, ["brown", "fox", "jumps"]) == [
        "The",
        "quick",
        "brown",
        "fox",
        "jumps",
    ]
    assert strops.merge_by_overlap(prev, ["wn", "fox", "jumps"]) == [
        "The",
        "quick",
        "brown",
        "fox",
        "jumps",
    ]


def test_no_overlap_or_empty_side_concatenates() -> None:
    assert strops.merge_by_overlap(["a", "b"], ["c", "d"]) == ["a", "b", "c", "d"]
    assert strops.merge_by_overlap([], ["c"]) == ["c"]
    assert strops.merge_by_overlap(["a"], []) == ["a"]
    assert strops.merge_by_overlap([], []) == []
    assert strops.align_overlap(["a", "b"], ["c", "d"]) is None
    assert strops.align_overlap([], ["a"]) is None


def test_align_on_keys_stitch_originals() -> None:
    """The caller matches normalised keys but keeps the model's casing and punctuation."""
    prev = ["Hello,", "my", "Name", "is"]
    new = ["name", "is", "Ada."]

    def key(word: str) -> str:
        return word.lower().strip(string.punctuation)

    cut = strops.align_overlap([key(w) for w in prev], [key(w) for w in new])
    assert cut == (2, 0)
    cut_prev, cut_new = cut or (len(prev), 0)
    assert prev[:cut_prev] + new[cut_new:] == ["Hello,", "my", "name", "is", "Ada."]
    # Without normalisation, "Name" vs "name" would not match and the overlap would be shorter.
    assert strops.align_overlap(prev, new) == (3, 1)


def test_scoring_is_optional_and_checked() -> None:
    prev, new = ["a", "b", "c", "x"], ["b", "c", "d"]
    assert strops.align_overlap(prev, new) == (1, 0)
    assert strops.align_overlap(prev, new, match_reward=1.0, gap_penalty=-5.0) is None
    assert strops.merge_by_overlap(prev, new, 1.0, -5.0) == prev + new
    with pytest.raises(ValueError, match="match_reward"):
        strops.align_overlap(prev, new, match_reward=0.0)
    with pytest.raises(ValueError, match="gap_penalty"):
        strops.merge_by_overlap(prev, new, gap_penalty=1.0)
    with pytest.raises(ValueError, match="match_reward"):
        strops.merge_by_overlap(prev, new, match_reward=float("nan"))


@pytest.mark.parametrize(
    ("prev", "new"),
    [("abc", ["a"]), (["a"], "abc"), (["a", 1], ["a"]), (["a"], [None]), (5, ["a"])],
)
def test_bad_input_raises_type_error(prev: object, new: object) -> None:
    with pytest.raises(TypeError):
        strops.merge_by_overlap(prev, new)  # pyright: ignore[reportArgumentType]
    with pytest.raises(TypeError):
        strops.align_overlap(prev, new)  # pyright: ignore[reportArgumentType]


def test_tuples_and_odd_unicode() -> None:
    prev = ("naïve", "café", "\U0001f600", "\ud800", "")
    new = ("\U0001f600", "\ud800", "", "done")
    merged = strops.merge_by_overlap(prev, new)
    assert merged == ["naïve", "café", "\U0001f600", "\ud800", "", "done"]


def test_returns_the_original_objects() -> None:
    prev = ["alpha", "beta"]
    new = ["beta", "gamma"]
    merged = strops.merge_by_overlap(prev, new)
    assert merged[0] is prev[0]
    assert merged[1] is new[0]


def test_large_lists() -> None:
    prev = [f"w{i}" for i in range(5000)]
    new = [f"w{i}" for i in range(4990, 6000)]
    assert strops.merge_by_overlap(prev, new) == [f"w{i}" for i in range(6000)]


def test_dp_releases_the_gil() -> None:
    """A Python thread keeps running while a long merge is in flight on another thread."""
    prev = [f"p{i}" for i in range(6000)]
    new = [f"n{i}" for i in range(6000)]
    ticks = 0
    done = threading.Event()

    def merge() -> None:
        strops.merge_by_overlap(prev, new)
        done.set()

    worker = threading.Thread(target=merge)
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    # 36M DP cells take tens of milliseconds at least; a held GIL would allow ~1 tick.
    assert ticks > 5


distinct_words = st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=40, unique=True)


@given(data=st.data(), words=distinct_words)
def test_any_overlapping_split_of_distinct_words_round_trips(
    data: st.DataObject, words: list[str]
) -> None:
    k = data.draw(st.integers(min_value=2, max_value=len(words)), label="k")
    j = data.draw(st.integers(min_value=0, max_value=k - 2), label="j")
    assert strops.merge_by_overlap(words[:k], words[j:]) == words


@given(
    prev=st.lists(st.sampled_from("abcde"), max_size=30),
    new=st.lists(st.sampled_from("abcde"), max_size=30),
)
def test_merge_is_a_prefix_of_prev_then_a_suffix_of_new(prev: list[str], new: list[str]) -> None:
    cut = strops.align_overlap(prev, new)
    merged = strops.merge_by_overlap(prev, new)
    if cut is None:
        assert merged == prev + new
    else:
        cut_prev, cut_new = cut
        assert 0 <= cut_prev < len(prev)
        assert 0 <= cut_new < len(new)
        # The stitch is at a matched pair.
        assert prev[cut_prev] == new[cut_new]
        assert merged == prev[:cut_prev] + new[cut_new:]


@given(words=st.lists(st.text(max_size=5), max_size=20))
def test_merging_with_itself_is_identity(words: list[str]) -> None:
    assert strops.merge_by_overlap(words, words) == words
