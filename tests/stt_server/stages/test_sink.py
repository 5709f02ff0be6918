from __future__ import annotations

from stt_server.pipeline import Pipeline
from stt_server.protocol import TranscriptionSegment
from stt_server.stages.sink import SinkStage


async def test_sink_sends_every_segment_in_order() -> None:
    sent: list[str] = []

    async def send(segment: TranscriptionSegment) -> None:
        sent.append(segment.to_json())

    sink = SinkStage(send)
    pipeline = Pipeline([sink])
    pipeline.start()
    await pipeline.put(TranscriptionSegment(text="a"))
    await pipeline.put(TranscriptionSegment(text="a b", is_final=True, is_end_of_turn=True))
    await pipeline.close()
    await pipeline.join()
    assert sent == [
        '{"text":"a","isFinal":false,"isEndOfTurn":false}',
        '{"text":"a b","isFinal":true,"isEndOfTurn":true}',
    ]
    assert sink.sent == 2
