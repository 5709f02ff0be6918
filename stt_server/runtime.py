"""What is loaded once per process and shared by every session, with one owner.

Lifecycle, top to bottom: `Runtime.load(settings)` (blocking: engines, one per device, and the
Silero network), then `start()` inside the serving event loop (the inference workers' threads
and the VAD batcher), then `stop()` at shutdown, in reverse.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from stt_server import metrics
from stt_server.engines import Engine, load_engine, resolve_device
from stt_server.engines.worker import InferencePool, InferenceWorker
from stt_server.settings import ServerSettings
from stt_server.stages.silero import SileroModel, VadBatcher


def devices(setting: str) -> list[str]:
    """`--device cuda:0,cuda:1` → one engine per listed device; `auto` → the one best here."""
    return [resolve_device(d.strip()) for d in setting.split(",") if d.strip()]


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
            engines = [
                load_engine(
                    settings.engine,
                    settings.model,
                    device,
                    whisper_padding=settings.whisper_padding,
                )
                for device in devices(settings.device)
            ]
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
