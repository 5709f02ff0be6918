"""Async stages composed with `+`: each stage is a task looping over a bounded input queue.

    pipeline = VadStage(...) + AsrStage(...) + SinkStage(...)
    pipeline.start()
    await pipeline.put(audio)      # waits when the first queue is full (backpressure)
    await pipeline.close()         # None sentinel: each stage finishes, then passes it on
    await pipeline.join()          # waits for every stage; re-raises the first stage failure

A stage that raises stops the whole chain (the others are cancelled) and `join()` re-raises
that exception, so the owner can report it to the client and end only that session.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

DEFAULT_QUEUE_SIZE = 64


class Stage(ABC, Generic[In, Out]):
    """One step of a pipeline: `handle` each input item, `emit` outputs downstream."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.inbox: asyncio.Queue[In | None] = asyncio.Queue(maxsize=queue_size)
        self._downstream: Stage[Out, Any] | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    @abstractmethod
    async def handle(self, item: In) -> None:
        """Process one input item."""

    async def finish(self) -> None:
        """Input has ended: emit whatever is still buffered."""

    async def emit(self, item: Out) -> None:
        if self._downstream is not None:
            await self._downstream.inbox.put(item)

    async def run(self) -> None:
        while (item := await self.inbox.get()) is not None:
            await self.handle(item)
        await self.finish()
        if self._downstream is not None:
            await self._downstream.inbox.put(None)

    def __add__(self, other: Stage[Out, Any] | Pipeline) -> Pipeline:
        return Pipeline([self]) + other


class Pipeline:
    """A chain of linked stages and the tasks that run them (the pipeline owns its tasks)."""

    def __init__(self, stages: list[Stage[Any, Any]]) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self.stages = stages
        self._tasks: list[asyncio.Task[None]] = []

    def __add__(self, other: Stage[Any, Any] | Pipeline) -> Pipeline:
        tail = other.stages if isinstance(other, Pipeline) else [other]
        self.stages[-1]._downstream = tail[0]
        return Pipeline([*self.stages, *tail])

    def start(self) -> None:
        if self._tasks:
            raise RuntimeError("pipeline already started")
        self._tasks = [
            asyncio.create_task(stage.run(), name=f"stage:{stage.name}") for stage in self.stages
        ]

    async def put(self, item: object) -> None:
        await self.stages[0].inbox.put(item)

    async def close(self) -> None:
        """Send the sentinel; stages shut down in order once they have drained their queues."""
        await self.stages[0].inbox.put(None)

    async def join(self) -> None:
        """Wait for every stage; on the first failure cancel the rest and re-raise it."""
        pending = set(self._tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and (exc := task.exception()) is not None:
                    await self._cancel(pending)
                    raise exc

    async def cancel(self) -> None:
        await self._cancel(set(self._tasks))

    @staticmethod
    async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
