from __future__ import annotations

from stt_server.pipeline import Pipeline
from stt_server.stages.asr import AsrOutput, Transcript
from stt_server.stages.sink import SinkStage
from stt_server.stages.vad import SpeechStart


async def test_sink_sends_every_event_in_order_and_counts_transcripts() -> None:
    sent: list[AsrOutput] = []

    async def send(event: AsrOutput) -> None:
        sent.append(event)

    events: list[AsrOutput] = [
        SpeechStart(0.5),
        Transcript("a", 0.5, 1.0),
        Transcript("a b", 0.5, 2.0, is_final=True, is_end_of_turn=True),
    ]
    sink = SinkStage(send)
    pipeline = Pipeline([sink])
    pipeline.start()
    for event in events:
        await pipeline.put(event)
    await pipeline.close()
    await pipeline.join()
    assert sent == events
    assert sink.sent == 2
