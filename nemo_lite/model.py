"""Canary-Qwen-2.5B (NeMo's SALM) for inference: audio in, text out, batched."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import PeftModel
from torch import Tensor, nn
from transformers import AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase, Qwen3ForCausalLM

from nemo_lite import weights
from nemo_lite.config import CanaryQwenConfig
from nemo_lite.perception import AudioPerceptionModule
from nemo_lite.qwen.llm import build_llm, merge_lora, qwen_model, rebuild_rotary
from nemo_lite.qwen.prompt import transcription_prompt

EOS_TOKEN = "<|im_end|>"
# Generation budget per clip. NeMo's recipe lets any clip generate 128 new tokens; a clip long
# enough to need more (English runs at 3-4 Qwen tokens per second, digits and spelled-out names at
# several more) gets 8 tokens per second plus a margin, which still bounds a runaway decode.
NEMO_MAX_NEW_TOKENS = 128
TOKENS_PER_SECOND = 8.0
TOKEN_MARGIN = 16

# The placeholder's id a released checkpoint was trained with, by (pretrained_llm, embedding rows):
# SALM appended the tag to that LLM's tokenizer, so only a tokenizer of the same length gives it.
TRAINED_PLACEHOLDER_IDS = {("Qwen/Qwen3-1.7B", 151936): 151669}

# The LLM's own copies of the tied embedding: SALM stores it once, as `embed_tokens.weight`.
EMBED_KEY = "embed_tokens.weight"
ALIASES = {
    "llm.base_model.model.model.embed_tokens.weight": EMBED_KEY,
    "llm.base_model.model.lm_head.weight": EMBED_KEY,
}


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def max_new_tokens(num_samples: int, sample_rate: int) -> int:
    by_duration = math.ceil(num_samples / sample_rate * TOKENS_PER_SECOND) + TOKEN_MARGIN
    return max(NEMO_MAX_NEW_TOKENS, by_duration)


class CanaryQwen(nn.Module):
    """`CanaryQwen.from_pretrained(source).transcribe([audio, ...])`, float32 mono 16 kHz arrays.

    Module attributes follow the SALM state dict: `perception.*`, `embed_tokens` (shared with the
    LLM's input embedding and its tied `lm_head`), `llm.*` (peft-wrapped Qwen3ForCausalLM).
    """

    def __init__(
        self,
        config: CanaryQwenConfig,
        llm_config: dict[str, Any],
        tokenizer: PreTrainedTokenizerBase,
    ) -> None:
        super().__init__()
        if config.prompt_format != "qwen":
            raise ValueError(
                f"only the 'qwen' prompt format is supported, got {config.prompt_format!r}"
            )
        self.config = config
        self.tokenizer = tokenizer
        self.perception = AudioPerceptionModule(config.perception)
        self.llm: PeftModel | Qwen3ForCausalLM = build_llm(llm_config, config.lora)
        embed = qwen_model(self.llm).model.embed_tokens
        assert isinstance(embed, nn.Embedding)
        self.embed_tokens = embed
        self.placeholder_id = _token_id(tokenizer, config.audio_locator_tag)
        if self.placeholder_id >= embed.num_embeddings:
            raise weights.CheckpointError(
                f"the audio placeholder's id {self.placeholder_id} is outside the LLM's "
                f"{embed.num_embeddings}-row embedding: the tokenizer does not belong to this LLM"
            )
        self.eos_id = _token_id(tokenizer, EOS_TOKEN)
        prompt = tokenizer(transcription_prompt(config.audio_locator_tag), add_special_tokens=False)
        ids: list[int] = list(prompt["input_ids"])  # pyright: ignore[reportArgumentType]
        if ids.count(self.placeholder_id) != 1:
            raise ValueError("the prompt must hold the audio placeholder exactly once")
        cut = ids.index(self.placeholder_id)
        self.prompt_before = ids[:cut]
        self.prompt_after = ids[cut + 1 :]
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    def checkpoint_shapes(self) -> dict[str, torch.Size]:
        """Keys and shapes the checkpoint must hold: the state dict minus the tied aliases."""
        return {k: v.shape for k, v in self.state_dict().items() if k not in ALIASES}

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        cache_dir: str | Path | None = None,
        merge_lora: bool = False,
    ) -> CanaryQwen:
        """Load from a checkpoint directory or hub id (see `nemo_lite.weights` for the layout).

        `merge_lora` folds the LoRA into the Qwen3 weights after loading (faster decoding; the
        adapter can no longer be switched off, and `llm` becomes a plain Qwen3ForCausalLM).

        Raises `CheckpointNotFoundError` (a `FileNotFoundError`) when the source is unavailable and
        `CheckpointError` naming the keys when the weights do not match the architecture exactly.
        """
        files = weights.resolve(source, cache_dir)
        target = torch.device(device)
        dtype = dtype or default_dtype(target)
        try:
            config = CanaryQwenConfig.from_dict(files.config)
        except (KeyError, TypeError, ValueError) as error:
            raise weights.CheckpointError(
                f"{files.root / weights.CONFIG} is not a SALM config: {error!r}"
            ) from error
        tokenizer = load_tokenizer(files.tokenizer_dir, config.audio_locator_tag)
        with torch.device("meta"):
            model = cls(config, files.llm_config, tokenizer)
        model.check_trained_placeholder()
        weights.load_weights(
            model, files.weights, model.checkpoint_shapes(), ALIASES, target, dtype
        )
        model.tie_embeddings()
        rebuild_rotary(model.llm, target)
        if merge_lora:
            model.merge_lora()
        return model.eval()

    def merge_lora(self) -> None:
        """Fold the LoRA into the base weights (see `nemo_lite.qwen.llm.merge_lora`); state-dict
        keys become plain Qwen3 ones, so this comes after loading."""
        if isinstance(self.llm, PeftModel):
            self.llm = merge_lora(self.llm)

    def check_trained_placeholder(self) -> None:
        """Raise `CheckpointError` when a released checkpoint's tokenizer would put the audio at
        another embedding row than the one it was trained with (see TRAINED_PLACEHOLDER_IDS)."""
        llm = self.config.pretrained_llm
        trained = TRAINED_PLACEHOLDER_IDS.get((llm, self.embed_tokens.num_embeddings))
        if trained is not None and self.placeholder_id != trained:
            raise weights.CheckpointError(
                f"the tokenizer gives the audio placeholder the id {self.placeholder_id}, but a "
                f"checkpoint built on {llm} was trained with it at {trained}: use {llm}'s own "
                "tokenizer files"
            )

    def tie_embeddings(self) -> None:
        """Make the LLM's input embedding and lm_head the very parameter `embed_tokens.weight`."""
        inner = qwen_model(self.llm)
        inner.model.embed_tokens = self.embed_tokens
        inner.lm_head.weight = self.embed_tokens.weight

    @torch.inference_mode()
    def transcribe(self, audios: list[np.ndarray]) -> list[str]:
        """Transcribe float32 mono 16 kHz clips in one batch; the text of a clip does not depend on
        the rest of the batch."""
        if not audios:
            return []
        rows = self.generate_ids(audios)
        return [str(self.tokenizer.decode(row, skip_special_tokens=True)).strip() for row in rows]

    @torch.inference_mode()
    def generate_ids(self, audios: list[np.ndarray]) -> list[list[int]]:
        """Greedy token ids per clip, each cut at its own budget (bounded by the clip's duration)
        and before `<|im_end|>`, so a clip's ids do not depend on the rest of the batch."""
        sample_rate = self.config.perception.preprocessor.sample_rate
        clips = [np.asarray(a, dtype=np.float32) for a in audios]
        if any(clip.ndim != 1 for clip in clips):
            raise ValueError("each audio must be a 1-D (mono) array of 16 kHz samples")
        lengths = [clip.shape[0] for clip in clips]
        budgets = [max_new_tokens(n, sample_rate) for n in lengths]
        audio = torch.zeros(len(clips), max(max(lengths), 1), dtype=torch.float32)
        for i, clip in enumerate(clips):
            audio[i, : lengths[i]] = torch.from_numpy(clip)
        audio = audio.to(self.device)
        audio_len = torch.tensor(lengths, device=self.device)
        embeds, mask = self.prompt_embeddings(audio, audio_len)
        generation = GenerationConfig(
            max_new_tokens=max(budgets),
            do_sample=False,
            num_beams=1,
            eos_token_id=self.eos_id,
            pad_token_id=self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.eos_id,
        )
        # transformers' GenerationMixin self-type does not match Qwen3ForCausalLM's (a stub quirk).
        out = self.llm.generate(  # pyright: ignore[reportAttributeAccessIssue]
            inputs_embeds=embeds, attention_mask=mask, generation_config=generation
        )
        assert isinstance(out, Tensor)
        rows: list[list[int]] = []
        for i, row in enumerate(out.tolist()):
            row = row[: budgets[i]]
            rows.append(row[: row.index(self.eos_id)] if self.eos_id in row else row)
        return rows

    def prompt_embeddings(self, audio: Tensor, audio_len: Tensor) -> tuple[Tensor, Tensor]:
        """Prompt embeddings with each clip's valid audio frames in place of the placeholder,
        left-padded to a common length: (B, L, hidden) and the attention mask (B, L)."""
        frames, frame_len = self.perception(audio, audio_len)
        before = self.embed_tokens(torch.tensor(self.prompt_before, device=self.device))
        after = self.embed_tokens(torch.tensor(self.prompt_after, device=self.device))
        pieces = [
            torch.cat([before, frames[i, : int(frame_len[i])].to(before.dtype), after])
            for i in range(frames.shape[0])
        ]
        longest = max(p.shape[0] for p in pieces)
        embeds = before.new_zeros(len(pieces), longest, before.shape[-1])
        mask = torch.zeros(len(pieces), longest, dtype=torch.long, device=self.device)
        for i, piece in enumerate(pieces):
            embeds[i, longest - piece.shape[0] :] = piece
            mask[i, longest - piece.shape[0] :] = 1
        return embeds, mask


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
        raise ValueError(f"tokenizer has no token {token!r}")
    return token_id


def load_tokenizer(directory: Path, audio_locator_tag: str) -> PreTrainedTokenizerBase:
    """The LLM's tokenizer plus the audio placeholder, added as SALM adds it.

    SALM appends the tag to the LLM's tokenizer as a new special token, so its id is the number of
    tokens before it: 151669 for Qwen3 (151643 byte-level BPE tokens, then 26 added ones), the
    embedding row Canary-Qwen-2.5B was trained to read as "audio here". A tokenizer that already
    holds the tag somewhere else, or whose ids have gaps so the tag would land elsewhere, would send
    the audio to another row; it raises `CheckpointError` instead.
    """
    tokenizer = AutoTokenizer.from_pretrained(directory)
    appended_id = len(tokenizer)
    if audio_locator_tag in tokenizer.get_vocab():
        appended_id -= 1  # saved with the tag already added: it must be the last token
    tokenizer.add_special_tokens({"additional_special_tokens": [audio_locator_tag]})
    token_id = tokenizer.convert_tokens_to_ids(audio_locator_tag)
    if token_id != appended_id:
        raise weights.CheckpointError(
            f"the tokenizer in {directory} gives {audio_locator_tag!r} the id {token_id}, but SALM "
            f"appends it after the vocabulary, at id {appended_id}; the checkpoint's embedding row "
            "for the audio placeholder would be the wrong one"
        )
    return tokenizer
