"""Canary-Qwen-2.5B's architecture with random weights: time per chunk, and serving under arrivals.

The model is built directly on the target device (bf16 on CUDA, fp32 on CPU unless --dtype says
otherwise) with random weights, so no checkpoint is needed; `--size mid` shrinks it (see SIZES) so a
CPU shows the same effects in minutes. The LoRA is merged into the weights as the server's engine
does (`--keep-lora` to decode through the adapter). Decoding is forced to `--tokens-per-second` x
duration new tokens, the cost of a transcript of typical length. The prompt comes from a tiny
stand-in tokenizer (16 text tokens; the real Qwen tokenizer gives about 14). Prints Markdown tables;
asserts nothing.

Batch mode (default): encoder and decode time per batch of equal chunks; RTFx, tokens/s, peak
memory.

Arrivals mode (`--arrivals`): Poisson arrivals of 1-10 s chunks at `--rate` per second, served two
ways on the same model and the same arrival trace:
  * whole-batch: `generate` on all chunks that arrived while the previous batch ran; every chunk of
    a batch waits for its longest transcript;
  * step-level: `nemo_lite.scheduler.ContinuousDecoder`, new chunks join between decode steps and
    finished ones leave at once.
Time is simulated: the clock advances by the measured compute time of each call and jumps to the
next arrival when idle, so waiting for arrivals costs no wall time. Latency = completion - arrival.

    .venv/bin/python benchmarks/bench_nemo_lite.py --device cuda --durations 1 5 10 20 \
        --batch-sizes 1 8 32
    .venv/bin/python benchmarks/bench_nemo_lite.py --device cpu --durations 5 --batch-sizes 1
    .venv/bin/python benchmarks/bench_nemo_lite.py --device cpu --size mid --threads 1 \
        --arrivals --rate 0.6 --requests 40
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nemo_lite.config import CanaryQwenConfig
from nemo_lite.model import CanaryQwen, default_dtype, load_tokenizer
from nemo_lite.preprocessing import AudioPreprocessor
from nemo_lite.presets import AUDIO_LOCATOR_TAG, CANARY_QWEN_2_5B, QWEN3_1_7B
from nemo_lite.qwen.llm import rebuild_rotary
from nemo_lite.scheduler import ContinuousDecoder
from tests.support.tiny_canary import write_tiny_tokenizer

SAMPLE_RATE = 16000
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
CHUNK_SECONDS = (1.0, 10.0)  # arrivals mode: chunk durations, uniform in this range

# Config overrides per size. `mid`: an encoder of 2 x 128 and a Qwen3 of 8 x 768 with a 32k
# vocabulary (about 80 M parameters): on a 2-core CPU a decode step takes tens of milliseconds and,
# as for the full model on a GPU, decoding rather than encoding takes most of the time.
SIZES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "full": ({}, {}),
    "mid": (
        {"n_layers": 2, "d_model": 128, "n_heads": 4, "subsampling_conv_channels": 32},
        {
            "hidden_size": 768,
            "intermediate_size": 2304,
            "num_hidden_layers": 8,
            "max_window_layers": 8,
            "num_attention_heads": 12,
            "num_key_value_heads": 4,
            "head_dim": 64,
            "vocab_size": 32768,
            "bos_token_id": None,  # Qwen's ids lie past this vocabulary; the prompt never uses them
            "eos_token_id": None,
        },
    ),
}


def configs(size: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """SALM and Qwen3 config dicts for `size`."""
    encoder, llm = SIZES[size]
    salm = copy.deepcopy(CANARY_QWEN_2_5B)
    salm["perception"]["encoder"].update(encoder)
    if encoder:
        salm["perception"]["modality_adapter"]["d_model"] = encoder["d_model"]
        salm["perception"]["output_dim"] = llm["hidden_size"]
    return salm, {**QWEN3_1_7B, **llm}


def build_random_model(
    device: torch.device, dtype: torch.dtype, size: str = "full", merge_lora: bool = True
) -> CanaryQwen:
    """The architecture allocated on `device` (never materialised elsewhere), random."""
    salm, llm = configs(size)
    with tempfile.TemporaryDirectory() as tmp:
        write_tiny_tokenizer(Path(tmp))
        tokenizer = load_tokenizer(Path(tmp), AUDIO_LOCATOR_TAG)
    with torch.device("meta"):
        model = CanaryQwen(CanaryQwenConfig.from_dict(salm), llm, tokenizer)
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
    if merge_lora:
        model.merge_lora()
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float:
    """Peak GPU memory since `reset_peak`; on CPU the process's peak RSS so far (never reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def forced_generate(
    model: CanaryQwen, audio: torch.Tensor, lengths: torch.Tensor, tokens: int
) -> None:
    """The whole-batch path (`CanaryQwen.generate_ids`) with exactly `tokens` new tokens per row."""
    embeds, mask = model.prompt_embeddings(audio, lengths)
    model.llm.generate(  # pyright: ignore[reportAttributeAccessIssue]
        inputs_embeds=embeds,
        attention_mask=mask,
        do_sample=False,
        min_new_tokens=tokens,
        max_new_tokens=tokens,
        pad_token_id=model.eos_id,
    )


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
        forced_generate(model, audio, lengths, new_tokens)

    encode()  # warm-up (kernels, allocator)
    full()
    reset_peak(device)
    enc = statistics.median(timed(encode, device) for _ in range(repeats))
    total = statistics.median(timed(full, device) for _ in range(repeats))
    return {
        "encoder_s": enc,
        "total_s": total,
        "decode_s": total - enc,
        "tokens": new_tokens,
        "peak_mib": peak_mib(device),
    }


@dataclasses.dataclass
class Arrival:
    request_id: int
    at: float  # seconds since the trace began
    audio: np.ndarray

    @property
    def seconds(self) -> float:
        return self.audio.shape[0] / SAMPLE_RATE


def poisson_trace(rate: float, count: int, seed: int) -> list[Arrival]:
    """`count` chunks, exponential gaps of mean 1/rate, durations uniform in CHUNK_SECONDS."""
    rng = np.random.default_rng(seed)
    at = np.cumsum(rng.exponential(1.0 / rate, count))
    seconds = rng.uniform(*CHUNK_SECONDS, count)
    noise = [np.asarray(rng.normal(0.0, 0.1, round(s * SAMPLE_RATE)), np.float32) for s in seconds]
    return [Arrival(i, float(at[i]), clip) for i, clip in enumerate(noise)]


def forced_tokens(samples: int, tokens_per_second: float) -> int:
    return max(1, math.ceil(samples / SAMPLE_RATE * tokens_per_second))


def serve_whole_batches(
    model: CanaryQwen, trace: list[Arrival], tokens_per_second: float, max_batch: int
) -> dict[int, float]:
    """Completion time per request when each batch is what queued while the previous one ran."""
    device = model.device
    done: dict[int, float] = {}
    clock, next_up = 0.0, 0
    while next_up < len(trace):
        clock = max(clock, trace[next_up].at)  # idle: jump to the next arrival
        batch = [a for a in trace[next_up : next_up + max_batch] if a.at <= clock]
        next_up += len(batch)
        lengths = torch.tensor([a.audio.shape[0] for a in batch])
        audio = torch.zeros(len(batch), int(lengths.max()))
        for i, a in enumerate(batch):
            audio[i, : a.audio.shape[0]] = torch.from_numpy(a.audio)
        tokens = max(forced_tokens(a.audio.shape[0], tokens_per_second) for a in batch)
        sync(device)
        start = time.perf_counter()
        forced_generate(model, audio.to(device), lengths.to(device), tokens)
        sync(device)
        clock += time.perf_counter() - start
        done.update((a.request_id, clock) for a in batch)
    return done


def serve_step_level(
    model: CanaryQwen, trace: list[Arrival], tokens_per_second: float, max_batch: int
) -> dict[int, float]:
    """Completion time per request with `ContinuousDecoder`: admit what arrived, step, repeat."""
    device = model.device
    decoder = ContinuousDecoder(model, budget=lambda n: forced_tokens(n, tokens_per_second))
    done: dict[int, float] = {}
    clock, next_up = 0.0, 0
    while len(done) < len(trace):
        if decoder.active == 0:
            clock = max(clock, trace[next_up].at)
        room = max_batch - decoder.active
        new = [a for a in trace[next_up : next_up + room] if a.at <= clock]
        next_up += len(new)
        sync(device)
        start = time.perf_counter()
        decoder.admit([(a.request_id, a.audio) for a in new])
        finished = decoder.step_ids()
        sync(device)
        clock += time.perf_counter() - start
        done.update((request_id, clock) for request_id, _ in finished)
    return done


def report_arrivals(model: CanaryQwen, args: argparse.Namespace, device: torch.device) -> None:
    """One table row per path and rate. A rate of r chunks/s of mean 5.5 s is the load of about
    5.5 r real-time streams that talk without pause: `offered` says it in audio s per s."""
    memory = "peak GPU MiB" if device.type == "cuda" else "peak RSS MiB"
    print(
        f"arrivals: chunks of {CHUNK_SECONDS[0]:g}-{CHUNK_SECONDS[1]:g} s, Poisson, seed "
        f"{args.seed}, max batch {args.max_batch}, decode forced to {args.tokens_per_second:g} "
        "tokens/s; latency = chunk arrival to its last token"
    )
    print()
    print(
        "| rate /s | offered audio s per s | chunks | path | p50 latency s | p99 latency s "
        f"| mean latency s | served audio s per s | makespan s | {memory} |"
    )
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    warm = poisson_trace(args.rate[0], 4, args.seed + 1)
    for serve in (serve_whole_batches, serve_step_level):
        serve(model, warm, args.tokens_per_second, args.max_batch)  # warm-up
    for rate in args.rate:
        count = args.requests or max(8, round(rate * args.trace_seconds))
        trace = poisson_trace(rate, count, args.seed)
        audio_s = sum(a.seconds for a in trace)
        offered = audio_s / count * rate  # audio seconds arriving per second, on average
        for name, serve in (("whole-batch", serve_whole_batches), ("step-level", serve_step_level)):
            reset_peak(device)
            done = serve(model, trace, args.tokens_per_second, args.max_batch)
            latency = np.array([done[a.request_id] - a.at for a in trace])
            makespan = max(done.values()) - trace[0].at
            print(
                f"| {rate:g} | {offered:.1f} | {count} | {name} "
                f"| {np.percentile(latency, 50):.2f} | {np.percentile(latency, 99):.2f} "
                f"| {latency.mean():.2f} | {audio_s / makespan:.2f} | {makespan:.1f} "
                f"| {peak_mib(device):.0f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None)
    parser.add_argument("--durations", type=float, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--tokens-per-second", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--keep-lora", action="store_true", help="decode through the adapter")
    parser.add_argument("--arrivals", action="store_true", help="serve a Poisson arrival trace")
    parser.add_argument(
        "--rate", type=float, nargs="+", default=[1.0], help="arrivals: chunks per second"
    )
    parser.add_argument(
        "--requests", type=int, default=0, help="arrivals: chunks per trace (0: --trace-seconds)"
    )
    parser.add_argument(
        "--trace-seconds", type=float, default=40.0, help="arrivals: trace length at each rate"
    )
    parser.add_argument("--max-batch", type=int, default=64, help="arrivals: most chunks at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 on a busy shared CPU)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype] if args.dtype else default_dtype(device)
    build = time.perf_counter()
    model = build_random_model(device, dtype, args.size, merge_lora=not args.keep_lora)
    build = time.perf_counter() - build
    params = sum(p.numel() for p in model.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"device: {device} ({name or platform.machine()}), dtype {dtype}, torch {torch.__version__}"
    )
    print(
        f"size {args.size}, LoRA {'kept' if args.keep_lora else 'merged'}, threads: "
        f"{torch.get_num_threads()}, parameters: {params:,}, build: {build:.1f} s"
    )
    if args.arrivals:
        report_arrivals(model, args, device)
        return
    print(f"decode forced to {args.tokens_per_second:g} tokens per second of audio")
    memory = "peak GPU MiB" if device.type == "cuda" else "peak RSS MiB"
    print()
    print(
        "| audio s | batch | new tokens | encoder ms | decode ms | total ms | ms per chunk | RTFx "
        f"| tokens/s | {memory} |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for duration in args.durations:
        for batch in args.batch_sizes:
            r = bench(model, duration, batch, args.tokens_per_second, args.repeats)
            per_chunk = r["total_s"] / batch
            print(
                f"| {duration:g} | {batch} | {r['tokens']:.0f} | {1e3 * r['encoder_s']:.0f} "
                f"| {1e3 * r['decode_s']:.0f} | {1e3 * r['total_s']:.0f} | {1e3 * per_chunk:.0f} "
                f"| {duration / per_chunk:.1f} | {batch * r['tokens'] / r['decode_s']:.0f} "
                f"| {r['peak_mib']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
