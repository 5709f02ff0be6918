from __future__ import annotations

import asyncio

import pytest

from stt_server.pipeline import Pipeline, Stage


class Map(Stage[int, int]):
    def __init__(self, factor: int, log: list[str], *, queue_size: int = 64) -> None:
        super().__init__(queue_size=queue_size)
        self.factor = factor
        self.log = log

    async def handle(self, item: int) -> None:
        await self.emit(item * self.factor)

    async def finish(self) -> None:
        self.log.append(f"finish x{self.factor}")
        await self.emit(-self.factor)  # finishing stages may still emit


class Collect(Stage[int, None]):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.items: list[int] = []
        self.log = log

    async def handle(self, item: int) -> None:
        self.items.append(item)

    async def finish(self) -> None:
        self.log.append("finish collect")


class Gate(Stage[int, int]):
    """Blocks on each item until released."""

    def __init__(self, queue_size: int) -> None:
        super().__init__(queue_size=queue_size)
        self.release = asyncio.Event()
        self.seen = 0

    async def handle(self, item: int) -> None:
        self.seen += 1
        await self.release.wait()
        await self.emit(item)


class Explode(Stage[int, int]):
    async def handle(self, item: int) -> None:
        if item == 3:
            raise ValueError("bad item")
        await self.emit(item)


async def test_plus_composes_stages_and_the_sentinel_shuts_them_down_in_order() -> None:
    log: list[str] = []
    collect = Collect(log)
    pipeline = Map(2, log) + Map(10, log) + collect
    assert isinstance(pipeline, Pipeline)
    assert len(pipeline.stages) == 3
    pipeline.start()
    for i in range(1, 4):
        await pipeline.put(i)
    await pipeline.close()
    await asyncio.wait_for(pipeline.join(), 5)
    assert collect.items == [20, 40, 60, -20, -10]
    assert log == ["finish x2", "finish x10", "finish collect"]


async def test_pipelines_compose_with_pipelines() -> None:
    log: list[str] = []
    collect = Collect(log)
    pipeline = (Map(2, log) + Map(3, log)) + (Map(5, log) + collect)
    pipeline.start()
    await pipeline.put(1)
    await pipeline.close()
    await pipeline.join()
    assert collect.items[0] == 30


async def test_bounded_queues_push_back_on_the_producer() -> None:
    log: list[str] = []
    gate = Gate(queue_size=2)
    collect = Collect(log)
    pipeline = gate + collect
    pipeline.start()
    await pipeline.put(1)
    await asyncio.sleep(0.01)  # the gate takes item 1 and blocks on it
    await pipeline.put(2)
    await pipeline.put(3)  # queue now full (2 items)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pipeline.put(4), 0.1)
    assert gate.inbox.qsize() == 2
    gate.release.set()
    await pipeline.put(4)
    await pipeline.close()
    await asyncio.wait_for(pipeline.join(), 5)
    assert collect.items == [1, 2, 3, 4]


async def test_a_failing_stage_cancels_the_others_and_join_raises() -> None:
    log: list[str] = []
    upstream = Gate(queue_size=1)
    upstream.release.set()
    collect = Collect(log)
    pipeline = upstream + Explode(queue_size=1) + collect
    pipeline.start()

    async def produce() -> None:
        for i in range(100):
            await pipeline.put(i)

    producer = asyncio.create_task(produce())
    with pytest.raises(ValueError, match="bad item"):
        await asyncio.wait_for(pipeline.join(), 5)
    assert collect.items == [0, 1, 2]
    await asyncio.sleep(0.05)
    assert not producer.done()  # blocked on a queue no one reads: the owner must cancel it
    producer.cancel()
    assert all(task.done() for task in pipeline._tasks)


def test_start_twice_is_an_error() -> None:
    async def body() -> None:
        pipeline = Pipeline([Collect([])])
        pipeline.start()
        with pytest.raises(RuntimeError):
            pipeline.start()
        await pipeline.cancel()

    asyncio.run(body())
