"""Time per chunk of the full-size Canary-Qwen-2.5B architecture (random weights): encoder, decode.

The model is built directly on the target device (bf16 on CUDA, fp32 on CPU unless --dtype says
otherwise) with random weights, so no checkpoint is needed; decoding is forced to exactly
`--tokens-per-second` x duration new tokens (min = max new tokens), i.e. the cost of a transcript of
typical length. The prompt comes from a tiny stand-in tokenizer (16 text tokens; the real Qwen
tokenizer gives about 14). Prints a Markdown table; asserts nothing.

    .venv/bin/python benchmarks/bench_nemo_lite.py --device cuda --durations 1 5 10 20 \
        --batch-sizes 1 8 32
    .venv/bin/python benchmarks/bench_nemo_lite.py --device cpu --durations 5 --batch-sizes 1
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nemo_lite.config import CanaryQwenConfig
from nemo_lite.model import CanaryQwen, default_dtype, load_tokenizer
from nemo_lite.preprocessing import AudioPreprocessor
from nemo_lite.presets import AUDIO_LOCATOR_TAG, CANARY_QWEN_2_5B, QWEN3_1_7B
from nemo_lite.qwen.llm import rebuild_rotary
from tests.support.tiny_canary import write_tiny_tokenizer

SAMPLE_RATE = 16000
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def build_random_model(device: torch.device, dtype: torch.dtype) -> CanaryQwen:
    """Full-size architecture allocated on `device` (never materialised elsewhere), random."""
    with tempfile.TemporaryDirectory() as tmp:
        write_tiny_tokenizer(Path(tmp))
        tokenizer = load_tokenizer(Path(tmp), AUDIO_LOCATOR_TAG)
    with torch.device("meta"):
        model = CanaryQwen(CanaryQwenConfig.from_dict(CANARY_QWEN_2_5B), QWEN3_1_7B, tokenizer)
    model.to(dtype=dtype)
    model.tie_embeddings()
    model.to_empty(device=device)
    model.tie_embeddings()
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point():
                tensor.zero_()
            elif name.endswith(("running_var",)) or ("norm" in name and name.endswith("weight")):
                tensor.fill_(1.0)
            elif tensor.dim() >= 2:
                std = (tensor.numel() / tensor.shape[0]) ** -0.5
                tensor.normal_(0.0, std, generator=generator)
            else:
                tensor.zero_()
        fresh = AudioPreprocessor(model.config.perception.preprocessor)
        model.perception.preprocessor.featurizer.window.copy_(fresh.featurizer.window)
        model.perception.preprocessor.featurizer.fb.copy_(fresh.featurizer.fb)
    rebuild_rotary(model.llm, device)
    return model.eval()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


@torch.inference_mode()
def bench(
    model: CanaryQwen, duration: float, batch: int, tokens_per_second: float, repeats: int
) -> dict[str, float]:
    device = model.device
    samples = round(duration * SAMPLE_RATE)
    generator = torch.Generator(device="cpu").manual_seed(1)
    audio = (0.1 * torch.randn(batch, samples, generator=generator)).to(device)
    lengths = torch.full((batch,), samples, device=device)
    new_tokens = math.ceil(tokens_per_second * duration)

    def encode() -> None:
        model.perception(audio, lengths)

    def full() -> None:
        embeds, mask = model.prompt_embeddings(audio, lengths)
        model.llm.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            do_sample=False,
            min_new_tokens=new_tokens,
            max_new_tokens=new_tokens,
            pad_token_id=model.eos_id,
        )

    encode()  # warm-up (kernels, allocator)
    full()
    enc = statistics.median(timed(encode, device) for _ in range(repeats))
    total = statistics.median(timed(full, device) for _ in range(repeats))
    return {"encoder_s": enc, "total_s": total, "decode_s": total - enc, "tokens": new_tokens}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None)
    parser.add_argument("--durations", type=float, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--tokens-per-second", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype] if args.dtype else default_dtype(device)
    build = time.perf_counter()
    model = build_random_model(device, dtype)
    build = time.perf_counter() - build
    params = sum(p.numel() for p in model.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"device: {device} ({name or platform.machine()}), dtype {dtype}, torch {torch.__version__}"
    )
    print(f"threads: {torch.get_num_threads()}, parameters: {params:,}, build: {build:.1f} s")
    print(f"decode forced to {args.tokens_per_second:g} tokens per second of audio")
    print()
    print(
        "| audio s | batch | new tokens | encoder ms | decode ms | total ms | ms per chunk | RTFx |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for duration in args.durations:
        for batch in args.batch_sizes:
            r = bench(model, duration, batch, args.tokens_per_second, args.repeats)
            per_chunk = r["total_s"] / batch
            print(
                f"| {duration:g} | {batch} | {r['tokens']:.0f} | {1e3 * r['encoder_s']:.0f} "
                f"| {1e3 * r['decode_s']:.0f} | {1e3 * r['total_s']:.0f} | {1e3 * per_chunk:.0f} "
                f"| {duration / per_chunk:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
