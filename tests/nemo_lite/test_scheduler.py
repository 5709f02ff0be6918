"""Step-level batching: any arrival pattern gives each request its greedy ids alone, at once."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_lite import CanaryQwen
from nemo_lite.model import max_new_tokens
from nemo_lite.scheduler import ContinuousDecoder
from tests.support.tiny_canary import write_tiny_checkpoint

# Clip lengths the property test draws from (references are computed once per length).
LENGTHS = (0, 100, 1600, 4000, 7000, 16000, 25000)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny matmuls on a shared 2-core machine: thread hand-offs cost more than the work.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _clip(n: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)


class Reference:
    """A model whose eos is a token it often emits (random weights never emit <|im_end|>), so
    requests finish at different steps, and each clip's greedy ids decoded alone."""

    def __init__(self, checkpoint: Path) -> None:
        self.model = CanaryQwen.from_pretrained(checkpoint)
        plain = [self.model.generate_ids([_clip(n)])[0] for n in LENGTHS[1:4]]
        counts = collections.Counter(token for row in plain for token in row[1:])
        self.model.eos_id = counts.most_common(1)[0][0]
        self._ids: dict[int, list[int]] = {}

    def ids(self, n: int) -> list[int]:
        if n not in self._ids:
            self._ids[n] = self.model.generate_ids([_clip(n)])[0]
        return self._ids[n]

    def steps_to_finish(self, n: int) -> int:
        """Steps after admission until the request is returned: prefill gives the first token,
        each step one more; a request done at prefill comes back at the next step."""
        ids = self.ids(n)
        budget = max_new_tokens(n, 16000)
        generated = len(ids) if len(ids) == budget else len(ids) + 1  # + the eos
        return max(generated - 1, 1)


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint: Path) -> Reference:
    return Reference(tiny_checkpoint)


@pytest.fixture(scope="module")
def mid(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return Reference(write_tiny_checkpoint(tmp_path_factory.mktemp("mid"), seed=1, mid=True))


def run(
    decoder: ContinuousDecoder, arrivals: list[tuple[int, int]]
) -> dict[int, tuple[int, list[int]]]:
    """Admit request i (clip length, step) before that step; return {i: (step returned, ids)}."""
    out: dict[int, tuple[int, list[int]]] = {}
    step = 0
    while len(out) < len(arrivals):
        new = [(i, _clip(n)) for i, (n, at) in enumerate(arrivals) if at == step]
        decoder.admit(new)
        step += 1
        for request_id, ids in decoder.step_ids():
            assert request_id not in out
            out[request_id] = (step, ids)
        assert decoder.active == sum(at < step for _, at in arrivals) - len(out)
    return out


def check_exact(reference: Reference, arrivals: list[tuple[int, int]]) -> None:
    decoder = ContinuousDecoder(reference.model)
    out = run(decoder, arrivals)
    for i, (n, at) in enumerate(arrivals):
        returned, ids = out[i]
        assert ids == reference.ids(n), (i, n, at)
        assert returned == at + reference.steps_to_finish(n), (i, n, at)
    assert decoder.active == 0
    assert decoder.cache_length == 0


arrival_patterns = st.lists(
    st.tuples(st.sampled_from(LENGTHS), st.integers(min_value=0, max_value=20)),
    min_size=1,
    max_size=6,
)


@given(arrivals=arrival_patterns)
@settings(max_examples=25, deadline=None)
def test_tiny_any_arrivals_equal_greedy_alone(
    tiny: Reference, arrivals: list[tuple[int, int]]
) -> None:
    check_exact(tiny, arrivals)


@given(arrivals=arrival_patterns)
@settings(max_examples=10, deadline=None)
def test_mid_any_arrivals_equal_greedy_alone(
    mid: Reference, arrivals: list[tuple[int, int]]
) -> None:
    check_exact(mid, arrivals)


def test_finished_request_leaves_and_its_cache_is_freed(tiny: Reference) -> None:
    long, short = max(LENGTHS, key=tiny.steps_to_finish), min(LENGTHS, key=tiny.steps_to_finish)
    assert tiny.steps_to_finish(long) > tiny.steps_to_finish(short) + 2
    decoder = ContinuousDecoder(tiny.model)
    decoder.admit([(1, _clip(long))])
    decoder.step_ids()
    length_alone = decoder.cache_length
    decoder.admit([(2, _clip(short))])
    returned: list[int] = []
    while not returned:
        returned = [request_id for request_id, _ in decoder.step_ids()]
    assert returned == [2]
    assert decoder.active == 1
    # Only the long request's positions are left: one row, its own length.
    assert decoder.cache_length == length_alone + tiny.steps_to_finish(short)


def test_abort_frees_the_row_and_leaves_the_others_exact(tiny: Reference) -> None:
    a, b, c = 25000, 16000, 7000
    decoder = ContinuousDecoder(tiny.model)
    decoder.admit([(1, _clip(a)), (2, _clip(b)), (3, _clip(c))])
    decoder.step_ids()
    decoder.abort(2)
    decoder.abort(99)  # unknown ids are ignored
    assert decoder.active == 2
    out: dict[int, list[int]] = {}
    while decoder.active:
        out.update(decoder.step_ids())
    assert out == {1: tiny.ids(a), 3: tiny.ids(c)}


def test_request_done_at_prefill_comes_back_at_the_next_step(tiny_checkpoint: Path) -> None:
    model = CanaryQwen.from_pretrained(tiny_checkpoint)
    clip = _clip(4000)
    model.eos_id = model.generate_ids([clip])[0][0]  # the first token ends it
    decoder = ContinuousDecoder(model)
    decoder.admit([(7, clip)])
    assert decoder.active == 1
    assert decoder.cache_length == 0  # nothing left to decode, nothing cached
    assert decoder.step() == [(7, "")]
    assert decoder.active == 0


def test_text_is_the_transcript_alone(tiny_model: CanaryQwen) -> None:
    clips = [_clip(3000), _clip(9000)]
    decoder = ContinuousDecoder(tiny_model)
    decoder.admit(list(enumerate(clips)))
    texts: dict[int, str] = {}
    while decoder.active:
        texts.update(decoder.step())
    assert [texts[0], texts[1]] == [tiny_model.transcribe([clip])[0] for clip in clips]


def test_duplicate_ids_and_stereo_are_refused(tiny_model: CanaryQwen) -> None:
    decoder = ContinuousDecoder(tiny_model)
    with pytest.raises(ValueError, match="unique"):
        decoder.admit([(1, _clip(100)), (1, _clip(200))])
    decoder.admit([(1, _clip(100))])
    with pytest.raises(ValueError, match="unique"):
        decoder.admit([(1, _clip(100))])
    with pytest.raises(ValueError, match="mono"):
        decoder.admit([(2, np.zeros((2, 100), np.float32))])
    assert decoder.active == 1
    decoder.admit([])
    assert decoder.step_ids() == []


def test_budget_can_be_set_per_clip_length(tiny: Reference) -> None:
    decoder = ContinuousDecoder(tiny.model, budget=lambda samples: 1 + samples // 4000)
    plain = [n for n in LENGTHS if len(tiny.ids(n)) >= 8]  # no eos within the first 8 ids
    assert plain
    decoder.admit([(n, _clip(n)) for n in plain])
    out: dict[int, list[int]] = {}
    while decoder.active:
        out.update(decoder.step_ids())
    assert out == {n: tiny.ids(n)[: 1 + n // 4000] for n in plain}
