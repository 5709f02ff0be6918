"""End to end on the tiny random checkpoint: batching, padding, determinism, budgets, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from peft import PeftModel

from nemo_lite import CanaryQwen
from nemo_lite.model import max_new_tokens

REPO = Path(__file__).resolve().parents[2]


def _clips(seed: int, lengths: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def test_batched_equals_unbatched(tiny_model: CanaryQwen) -> None:
    clips = _clips(1, [16000, 5600, 11111, 2400])
    batched = tiny_model.generate_ids(clips)
    alone = [tiny_model.generate_ids([clip])[0] for clip in clips]
    assert batched == alone
    assert [len(row) for row in batched] == [max_new_tokens(len(c), 16000) for c in clips]
    assert tiny_model.transcribe(clips) == [tiny_model.transcribe([c])[0] for c in clips]


def test_batch_order_does_not_matter(tiny_model: CanaryQwen) -> None:
    clips = _clips(2, [8000, 12000, 3000])
    forward = tiny_model.generate_ids(clips)
    backward = tiny_model.generate_ids(clips[::-1])
    assert forward == backward[::-1]


def test_deterministic(tiny_model: CanaryQwen) -> None:
    clips = _clips(3, [7000, 9000])
    assert tiny_model.transcribe(clips) == tiny_model.transcribe(clips)


def test_different_audio_gives_different_tokens(tiny_model: CanaryQwen) -> None:
    a, b = _clips(4, [16000, 16000])
    assert tiny_model.generate_ids([a]) != tiny_model.generate_ids([b])


def test_splice_lengths_and_left_padding(tiny_model: CanaryQwen) -> None:
    clips = _clips(5, [16000, 4000])
    audio = torch.zeros(2, 16000)
    for i, clip in enumerate(clips):
        audio[i, : len(clip)] = torch.from_numpy(clip)
    lengths = torch.tensor([16000, 4000])
    embeds, mask = tiny_model.prompt_embeddings(audio, lengths)
    # 16000 samples -> 101 mel frames -> 13 encoder frames; 4000 -> 26 -> 4 (stride-2 thrice).
    prompt = len(tiny_model.prompt_before) + len(tiny_model.prompt_after)
    assert mask.sum(dim=1).tolist() == [prompt + 13, prompt + 4]
    assert mask[1, : 13 - 4].eq(0).all()  # left padded
    assert mask[1, 13 - 4 :].eq(1).all()
    assert embeds.shape == (2, prompt + 13, tiny_model.embed_tokens.embedding_dim)
    assert embeds[1, : 13 - 4].eq(0).all()
    # The text around the audio is the prompt's token embeddings, in both rows.
    before = tiny_model.embed_tokens(torch.tensor(tiny_model.prompt_before))
    assert torch.equal(embeds[0, : len(tiny_model.prompt_before)], before)
    assert torch.equal(embeds[1, 9 : 9 + len(tiny_model.prompt_before)], before)


def test_budget_is_nemos_128_tokens_then_grows_with_duration(tiny_model: CanaryQwen) -> None:
    assert [max_new_tokens(n, 16000) for n in (0, 1600, 16000 * 14)] == [128, 128, 128]
    assert max_new_tokens(16000 * 15, 16000) == 15 * 8 + 16
    assert max_new_tokens(16000 * 40, 16000) == 40 * 8 + 16
    # Random weights never emit <|im_end|>, so each clip runs to its budget.
    short, long = _clips(6, [4000, 16000 * 16])
    assert len(tiny_model.generate_ids([short])[0]) == 128
    assert len(tiny_model.generate_ids([long])[0]) == 16 * 8 + 16


def test_cli_transcribes_wav_files(tiny_checkpoint: Path, tmp_path: Path) -> None:
    clips = _clips(7, [16000, 8000])
    paths = [tmp_path / "a.wav", tmp_path / "b.wav"]
    soundfile.write(paths[0], clips[0], 16000, subtype="FLOAT")
    # 8 kHz stereo: the CLI mixes down and resamples before transcribing.
    soundfile.write(paths[1], np.stack([clips[1], clips[1]], axis=1), 8000, subtype="FLOAT")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "nemo_lite", "transcribe", *map(str, paths)]
    result = subprocess.run(
        [*command, "--model", str(tiny_checkpoint), "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.rstrip("\n").split("\n")
    assert [line.split("\t")[0] for line in lines] == [str(p) for p in paths]
    expected = CanaryQwen.from_pretrained(tiny_checkpoint).transcribe([clips[0]])[0]
    assert lines[0] == f"{paths[0]}\t{expected}"


def test_cli_reports_missing_model(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    soundfile.write(wav, _clips(8, [1600])[0], 16000)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "nemo_lite", "transcribe", str(wav), "--model", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "HF_HUB_OFFLINE" in result.stderr


def test_empty_and_very_short_clips(tiny_model: CanaryQwen) -> None:
    clips = [np.zeros(0, dtype=np.float32), *_clips(9, [1, 100, 16000])]
    batched = tiny_model.generate_ids(clips)
    assert batched == [tiny_model.generate_ids([clip])[0] for clip in clips]
    assert len(tiny_model.transcribe(clips)) == 4
    assert tiny_model.transcribe([]) == []


def test_bfloat16_on_cpu_runs_with_float32_features(tiny_checkpoint: Path) -> None:
    model = CanaryQwen.from_pretrained(tiny_checkpoint, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    assert model.perception.proj.weight.dtype == torch.bfloat16
    clip = _clips(10, [8000])[0]
    mel, _ = model.perception.preprocessor(torch.from_numpy(clip)[None], torch.tensor([8000]))
    assert mel.dtype == torch.float32
    texts = model.transcribe([clip, clip[:4000]])
    assert len(texts) == 2
    assert all(isinstance(t, str) for t in texts)


def test_rejects_multichannel_arrays(tiny_model: CanaryQwen) -> None:
    with pytest.raises(ValueError, match="mono"):
        tiny_model.transcribe([np.zeros((2, 1600), dtype=np.float32)])


def test_merged_lora_equals_the_adapter(tiny_checkpoint: Path, tiny_model: CanaryQwen) -> None:
    merged = CanaryQwen.from_pretrained(tiny_checkpoint, merge_lora=True)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    assert merged.llm.lm_head.weight is merged.embed_tokens.weight  # pyright: ignore[reportAttributeAccessIssue]
    clips = _clips(11, [16000, 7000])
    audio = torch.zeros(2, 16000)
    for i, clip in enumerate(clips):
        audio[i, : len(clip)] = torch.from_numpy(clip)
    lengths = torch.tensor([16000, 7000])
    with torch.inference_mode():
        embeds, mask = tiny_model.prompt_embeddings(audio, lengths)
        want = tiny_model.llm(inputs_embeds=embeds, attention_mask=mask).logits
        got = merged.llm(inputs_embeds=embeds, attention_mask=mask).logits
    assert want.abs().max() > 1.0
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)  # fp32 rounding of W + s*B*A
    # The adapter matters: without it the logits move far more than that.
    assert isinstance(tiny_model.llm, PeftModel)
    with torch.inference_mode(), tiny_model.llm.disable_adapter():
        plain = tiny_model.llm(inputs_embeds=embeds, attention_mask=mask).logits
    assert (plain - want).abs().max() > 1e-2
    assert merged.generate_ids(clips) == tiny_model.generate_ids(clips)
