"""Microphone capture through sounddevice (PortAudio), as an async stream of 16 kHz frames."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import soxr

from stt_server.audio import SAMPLE_RATE, Audio


class MicrophoneError(Exception):
    """No usable input device; the message says what was found."""


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # the module loads PortAudio at import time
        raise MicrophoneError(f"cannot use the microphone: {exc}") from exc
    return sounddevice


def input_devices(sd: Any) -> list[tuple[int, str]]:
    return [
        (index, str(dev["name"]))
        for index, dev in enumerate(sd.query_devices())
        if int(dev["max_input_channels"]) > 0
    ]


def choose_device(sd: Any, requested: int | None, ask: Callable[[str], str] | None) -> int:
    """The input device to use: `requested` if valid, else the only one, else the user's pick
    through `ask` (None when there is no one to ask: then the system default)."""
    devices = input_devices(sd)
    if not devices:
        raise MicrophoneError("no audio input device found")
    indices = [index for index, _ in devices]
    if requested is not None:
        if requested not in indices:
            raise MicrophoneError(f"device {requested} is not an input device; inputs: {indices}")
        return requested
    if len(devices) == 1 or ask is None:
        default = sd.default.device[0] if sd.default.device else None
        return default if default in indices else indices[0]
    for index, name in devices:
        print(f"  {index}: {name}")
    while True:
        answer = ask(f"input device [{indices[0]}]: ").strip()
        if not answer:
            return indices[0]
        if answer.isdigit() and int(answer) in indices:
            return int(answer)
        print(f"choose one of {indices}")


async def microphone_frames(
    device: int | None = None, stop: asyncio.Event | None = None
) -> AsyncIterator[Audio]:
    """Frames from the microphone, resampled to 16 kHz mono, until `stop` is set (Ctrl-C)."""
    stop = stop or asyncio.Event()
    sd = _sounddevice()
    index = choose_device(sd, device, input if sys.stdin.isatty() else None)
    rate = int(sd.query_devices(index)["default_samplerate"])
    loop = asyncio.get_running_loop()
    # Unbounded: the microphone produces in real time and the sender is faster than that; a
    # bound would have to drop audio in PortAudio's thread, which must never block.
    queue: asyncio.Queue[Audio] = asyncio.Queue()

    def on_audio(indata: np.ndarray, frames: int, time: object, status: object) -> None:
        # PortAudio's thread: hand a copy to the event loop.
        block = np.asarray(indata, dtype=np.float32).mean(axis=1).copy()
        loop.call_soon_threadsafe(queue.put_nowait, block)

    resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1)
    with sd.InputStream(
        device=index,
        samplerate=rate,
        channels=1,
        dtype="float32",
        blocksize=rate // 50,
        callback=on_audio,
    ):
        stopped = asyncio.create_task(stop.wait())
        try:
            while True:
                got = asyncio.create_task(queue.get())
                await asyncio.wait({got, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not got.done():
                    got.cancel()
                    return
                block = got.result()
                if resampler is not None:
                    block = resampler.resample_chunk(block).astype(np.float32, copy=False)
                yield block
        finally:
            stopped.cancel()
