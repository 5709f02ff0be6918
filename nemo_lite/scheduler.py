"""Step-level (continuous) batching of Canary-Qwen's greedy decoding.

Every `step()` decodes one token for every active request; `admit()` encodes new clips in one padded
FastConformer batch and prefills their prompts, so they join at the next step; a request leaves the
batch (and its KV cache rows) the step it finishes, without waiting for the others.

Why our own scheduler: transformers' continuous batching (`generate_batch`,
`ContinuousBatchingManager`) takes prompts as token ids only, with no `inputs_embeds`, so the audio
frames spliced at the placeholder cannot enter it, and it runs its own background loop where the
server wants to drive each step. What we keep from transformers is the model forward and its
`DynamicCache`, whose per-layer key/value tensors this class pads, joins and slices.

The batch cache is left-padded: row i holds request i's keys at its last positions, with an
attention mask and explicit RoPE position ids, so each request computes what it would alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from nemo_lite.model import CanaryQwen, max_new_tokens
from nemo_lite.qwen.llm import qwen_model


@dataclasses.dataclass
class _Request:
    request_id: int
    budget: int  # most new tokens this clip may generate
    position: int  # RoPE position of the next token fed to the LLM
    tokens: list[int]  # generated so far; the last one is not in the cache yet

    @property
    def done(self) -> bool:
        return len(self.tokens) >= self.budget

    def finished(self, eos_id: int) -> bool:
        return self.tokens[-1] == eos_id or self.done


class ContinuousDecoder:
    """Greedy decoding of many clips with requests joining and leaving between steps.

    Not thread-safe: one thread (the server's inference worker) calls `admit`, `step` and `abort`.
    """

    def __init__(self, model: CanaryQwen, budget: Callable[[int], int] | None = None) -> None:
        """`budget(samples)`: most new tokens a clip may generate; default the model's
        (`nemo_lite.model.max_new_tokens`, NeMo's 128 or more for long clips)."""
        self.model = model
        rate = model.config.perception.preprocessor.sample_rate
        self.budget = budget or (lambda samples: max_new_tokens(samples, rate))
        self.lm = qwen_model(model.llm)
        self._rows: list[_Request] = []  # row i of the cache and mask is _rows[i]
        self._cache: DynamicCache | None = None
        self._mask: Tensor | None = None  # (rows, cached positions), 1 where a key is real
        self._done_at_prefill: list[_Request] = []

    @property
    def active(self) -> int:
        """Requests admitted and not yet returned or aborted."""
        return len(self._rows) + len(self._done_at_prefill)

    @property
    def cache_length(self) -> int:
        """Positions held per cache row (the longest active sequence): what the KV cache costs."""
        return 0 if self._mask is None else self._mask.shape[1]

    @torch.inference_mode()
    def admit(self, requests: list[tuple[int, np.ndarray]]) -> None:
        """Encode and prefill new (request id, float32 mono 16 kHz clip) pairs; they join the batch
        at the next `step()`. Ids must be unique among active requests."""
        if not requests:
            return
        known = {r.request_id for r in [*self._rows, *self._done_at_prefill]}
        ids = [request_id for request_id, _ in requests]
        if len(set(ids)) != len(ids) or known & set(ids):
            raise ValueError(f"request ids must be unique among active requests: {ids}")
        model = self.model
        clips = [np.asarray(clip, dtype=np.float32) for _, clip in requests]
        if any(clip.ndim != 1 for clip in clips):
            raise ValueError("each audio must be a 1-D (mono) array of 16 kHz samples")
        lengths = [clip.shape[0] for clip in clips]
        audio = torch.zeros(len(clips), max(max(lengths), 1), dtype=torch.float32)
        for i, clip in enumerate(clips):
            audio[i, : lengths[i]] = torch.from_numpy(clip)
        audio_len = torch.tensor(lengths)
        embeds, mask = model.prompt_embeddings(audio.to(model.device), audio_len.to(model.device))
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (N, L); padding gets 0, masked anyway
        cache = DynamicCache(config=self.lm.config)
        out = self.lm(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        first = out.logits[:, -1].argmax(dim=-1).tolist()
        new = [
            _Request(request_id, self.budget(n), int(length), [token])
            for request_id, n, length, token in zip(
                ids, lengths, mask.sum(dim=1).tolist(), first, strict=True
            )
        ]
        self._join(new, cache, mask)
        self._take_finished(into=self._done_at_prefill)

    def step(self) -> list[tuple[int, str]]:
        """Decode one token for every active request; return (id, text) of those that finished."""
        tokenizer = self.model.tokenizer
        return [
            (request_id, str(tokenizer.decode(ids, skip_special_tokens=True)).strip())
            for request_id, ids in self.step_ids()
        ]

    @torch.inference_mode()
    def step_ids(self) -> list[tuple[int, list[int]]]:
        """`step()` with token ids instead of text: each finished request's greedy ids, cut before
        `<|im_end|>`, the ids `CanaryQwen.generate_ids` gives the clip alone."""
        finished, self._done_at_prefill = self._done_at_prefill, []
        if self._rows:
            assert self._cache is not None
            assert self._mask is not None
            device = self.model.device
            last = torch.tensor([[r.tokens[-1]] for r in self._rows], device=device)
            positions = torch.tensor([[r.position] for r in self._rows], device=device)
            self._mask = torch.cat([self._mask, self._mask.new_ones(len(self._rows), 1)], dim=1)
            out = self.lm(
                input_ids=last,
                attention_mask=self._mask,
                position_ids=positions,
                cache=self._cache,
                use_cache=True,
                logits_to_keep=1,
            )
            tokens = out.logits[:, -1].argmax(dim=-1).tolist()
            for request, token in zip(self._rows, tokens, strict=True):
                request.tokens.append(int(token))
                request.position += 1
            self._take_finished(into=finished)
        return [(r.request_id, self._ids(r)) for r in finished]

    def abort(self, request_id: int) -> None:
        """Drop a request and free its cache row; unknown or already returned ids are ignored."""
        self._done_at_prefill = [r for r in self._done_at_prefill if r.request_id != request_id]
        self._keep([i for i, r in enumerate(self._rows) if r.request_id != request_id])

    def _ids(self, request: _Request) -> list[int]:
        tokens = request.tokens
        eos = self.model.eos_id
        return tokens[: tokens.index(eos)] if eos in tokens else tokens

    def _take_finished(self, into: list[_Request]) -> None:
        eos = self.model.eos_id
        into.extend(r for r in self._rows if r.finished(eos))
        self._keep([i for i, r in enumerate(self._rows) if not r.finished(eos)])

    def _keep(self, rows: list[int]) -> None:
        """Keep only these cache rows, then drop the leading positions no kept row uses."""
        if len(rows) == len(self._rows):
            return
        self._rows = [self._rows[i] for i in rows]
        if not rows or self._cache is None or self._mask is None:
            self._rows, self._cache, self._mask = [], None, None
            return
        index = torch.tensor(rows, device=self._mask.device)
        mask = self._mask.index_select(0, index)
        start = int(mask.any(dim=0).int().argmax())  # first position some kept row attends to
        self._mask = mask[:, start:].contiguous()
        for layer in _layers(self._cache):
            keys, values = _tensors(layer)
            layer.keys = keys.index_select(0, index)[:, :, start:].contiguous()
            layer.values = values.index_select(0, index)[:, :, start:].contiguous()

    def _join(self, new: list[_Request], cache: DynamicCache, mask: Tensor) -> None:
        """Append the prefilled rows, left-padding the shorter side to a common length."""
        self._rows.extend(new)
        if self._cache is None or self._mask is None:
            self._cache, self._mask = cache, mask
            return
        length = max(self._mask.shape[1], mask.shape[1])
        self._mask = torch.cat([_left_pad(self._mask, length, 1), _left_pad(mask, length, 1)])
        for old, fresh in zip(_layers(self._cache), _layers(cache), strict=True):
            (old_keys, old_values), (keys, values) = _tensors(old), _tensors(fresh)
            old.keys = torch.cat([_left_pad(old_keys, length, 2), _left_pad(keys, length, 2)])
            old.values = torch.cat([_left_pad(old_values, length, 2), _left_pad(values, length, 2)])


def _layers(cache: DynamicCache) -> list[DynamicLayer]:
    """The cache's per-layer tensors; Qwen3 without sliding windows has only full-attention ones."""
    layers = cache.layers
    if not all(isinstance(layer, DynamicLayer) and layer.is_initialized for layer in layers):
        raise TypeError("expected a filled DynamicCache of full-attention layers")
    return layers  # pyright: ignore[reportReturnType]


def _tensors(layer: DynamicLayer) -> tuple[Tensor, Tensor]:
    """Keys and values, (rows, kv heads, positions, head dim) each."""
    if layer.keys is None or layer.values is None:
        raise TypeError("cache layer without keys")
    return layer.keys, layer.values


def _left_pad(x: Tensor, length: int, dim: int) -> Tensor:
    """Zeros before `x` along `dim` up to `length` (padding is masked out, zeros are arbitrary)."""
    missing = length - x.shape[dim]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_zeros(shape), x], dim=dim)
