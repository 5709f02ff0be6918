"""What is loaded once per process and shared by every session, with one owner.

Lifecycle, top to bottom: `Runtime.load(settings)` (blocking: engines, one per device, and the
Silero network), then `start()` inside the serving event loop (the inference workers' threads
and the VAD batcher), then `stop()` at shutdown, in reverse.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field

from stt_server import metrics
from stt_server.engines import Engine, choose_engine, load_engine, resolve_device
from stt_server.engines.worker import InferencePool, InferenceWorker
from stt_server.settings import ServerSettings
from stt_server.stages.silero import SileroModel, VadBatcher

log = logging.getLogger(__name__)

# `--device auto` on a host without a GPU, serving whisper: one engine per core, at most this
# many. whisper-base keeps one core busy well and two poorly (on the 2-core dev machine a
# decode at one stream took 0.44 s on one thread and 0.63 s on two), so engines side by side,
# one thread each, carry more streams than one engine with every thread (BENCHMARKS.md,
# "Whisper engine").
MAX_CPU_ENGINES = 4


def devices(setting: str, engine: str = "auto", model: str | None = None) -> list[str]:
    """`--device cuda:0,cuda:1` → one engine per listed device; `auto` → the best here: the GPU,
    or for whisper on a CPU one engine per core (up to `MAX_CPU_ENGINES`)."""
    if setting.strip() == "auto":
        device = resolve_device("auto")
        if device == "cpu" and choose_engine(engine, model, device)[0] == "whisper":
            return ["cpu"] * max(1, min(os.cpu_count() or 1, MAX_CPU_ENGINES))
        return [device]
    return [resolve_device(d.strip()) for d in setting.split(",") if d.strip()]


def load_engines(settings: ServerSettings) -> list[Engine]:
    """One engine per device (blocking); the CPU's cores are shared among the CPU engines
    unless `--cpu-threads` says how many each takes."""
    listed = devices(settings.device, settings.engine, settings.model)
    engine, why = choose_engine(settings.engine, settings.model, listed[0])
    if settings.engine == "auto":
        log.info("engine auto: %s (%s)", engine, why)
    on_cpu = listed.count("cpu")
    threads = settings.cpu_threads or max(1, (os.cpu_count() or 1) // max(on_cpu, 1))
    return [
        load_engine(
            engine,
            settings.model,
            device,
            whisper_padding=settings.whisper_padding,
            cpu_threads=threads if device == "cpu" else 0,
        )
        for device in listed
    ]


@dataclass
class Runtime:
    engines: list[Engine]
    pool: InferencePool
    silero: SileroModel
    batcher: VadBatcher | None = field(default=None)

    @property
    def engine(self) -> Engine:
        return self.engines[0]

    @classmethod
    def load(cls, settings: ServerSettings, engines: list[Engine] | None = None) -> Runtime:
        """Load the models (blocking; call it off the event loop). `engines`: already loaded."""
        if engines is None:
            engines = load_engines(settings)
        workers = [
            InferenceWorker(
                engine, max_batch_size=settings.max_batch_size, max_wait_ms=settings.batch_wait_ms
            )
            for engine in engines
        ]
        first = engines[0]
        metrics.MODEL_INFO.info(
            {
                "engine": first.name,
                "model": first.model,
                "devices": ",".join(e.device for e in engines),
            }
        )
        return cls(engines=engines, pool=InferencePool(workers), silero=SileroModel())

    def start(self) -> None:
        """Start the workers; the VAD batcher belongs to the running event loop."""
        self.batcher = VadBatcher(self.silero)
        self.pool.start()

    async def stop(self, worker_wait: float = 10.0) -> None:
        if self.batcher is not None:
            await self.batcher.stop()
        await asyncio.to_thread(self.pool.stop, worker_wait)

    def describe(self) -> dict[str, object]:
        """For /health: what is served, and how busy each device is."""
        return {
            "engine": self.engine.name,
            "model": self.engine.model,
            "device": ",".join(e.device for e in self.engines),
            "devices": [
                {
                    "device": w.device,
                    "queued": w.load,
                    "backlog_seconds": round(w.backlog_seconds(), 3),
                }
                for w in self.pool.workers
            ],
        }
