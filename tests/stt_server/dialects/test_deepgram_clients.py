"""Real Deepgram clients against a real server (whisper-base, CPU): the official deepgram-sdk,
Pipecat's DeepgramSTTService in a Pipecat pipeline, and LiveKit Agents' Deepgram plugin. Speech is
espeak-ng, streamed in real time; each client ends its turns with Finalize, as it does in use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
from deepgram.core.events import EventType
from deepgram.listen.v1.types import ListenV1Metadata, ListenV1Results, ListenV1SpeechStarted
from livekit import rtc
from livekit.agents import stt as lk_stt
from livekit.plugins import deepgram as lk_deepgram
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.tests.utils import QueuedFrameProcessor
from pipecat.workers.runner import WorkerRunner

from stt_server.audio import SAMPLE_RATE, encode_pcm16
from tests.stt_server.speech import SENTENCES, make_recording, word_error_rate

pytestmark = pytest.mark.slow

# Like the server tests' bound (measured 0.05-0.08 streamed), with room for the short turns.
MAX_WER = 0.25
FRAME_SECONDS = 0.02
# Whisper on a shared CPU can fall far behind real time; a missing answer still fails.
ANSWER_TIMEOUT = 120.0
KEY = "any-key"  # the test server has no key: every key is accepted


def pcm_frames(audio: npt.NDArray[np.float32], seconds: float = FRAME_SECONDS) -> list[bytes]:
    step = round(seconds * SAMPLE_RATE)
    return [encode_pcm16(audio[i : i + step]) for i in range(0, len(audio), step)]


async def paced(frames: list[bytes], seconds: float = FRAME_SECONDS) -> AsyncIterator[bytes]:
    """The frames at real-time pace (on a schedule, so slow sends do not add up)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, frame in enumerate(frames):
        await asyncio.sleep(max(0.0, start + i * seconds - loop.time()))
        yield frame


def sentence_audio(sentence: str) -> npt.NDArray[np.float32]:
    """One sentence with 0.3 s of silence before and after it."""
    return make_recording((sentence,), (0.3,), lead=0.3).audio


# --- deepgram-sdk -------------------------------------------------------------------------


async def test_deepgram_sdk_streams_interims_and_finals(whisper_server: str) -> None:
    # Two sentences in one turn: the pause between them cuts a chunk, whose tentative transcript
    # arrives as an interim before the final.
    recording = make_recording(SENTENCES[:2], (0.5, 0.3))
    environment = DeepgramClientEnvironment(
        base=f"http://{whisper_server}",
        production=f"ws://{whisper_server}",
        agent=f"ws://{whisper_server}",
        agent_rest=f"http://{whisper_server}",
    )
    client = AsyncDeepgramClient(api_key=KEY, environment=environment)
    received: list[Any] = []
    errors: list[Any] = []
    final = asyncio.Event()

    def on_message(message: Any) -> None:
        received.append(message)
        if isinstance(message, ListenV1Results) and message.from_finalize:
            final.set()

    async with client.listen.v1.connect(
        model="nova-3",
        encoding="linear16",
        sample_rate=SAMPLE_RATE,
        channels=1,
        interim_results=True,
        punctuate=True,
        vad_events=True,
        language="en-US",
        keyterm=["Stella"],
    ) as connection:
        connection.on(EventType.MESSAGE, on_message)
        connection.on(EventType.ERROR, errors.append)
        listening = asyncio.create_task(connection.start_listening())
        async for frame in paced(pcm_frames(recording.audio)):
            await connection.send_media(frame)
        await connection.send_keep_alive()
        await connection.send_finalize()
        await asyncio.wait_for(final.wait(), ANSWER_TIMEOUT)
        await connection.send_close_stream()
        await asyncio.wait_for(listening, ANSWER_TIMEOUT)

    assert errors == []
    results = [m for m in received if isinstance(m, ListenV1Results)]
    interims = [r for r in results if not r.is_final and r.channel.alternatives[0].transcript]
    finals = [r for r in results if r.is_final]
    assert interims, "no interim results"
    assert len(finals) == 1
    (answer,) = finals
    assert answer.from_finalize
    assert answer.speech_final
    text = answer.channel.alternatives[0].transcript
    assert word_error_rate(recording.text, text) <= MAX_WER, text
    assert isinstance(received[0], ListenV1SpeechStarted)
    assert isinstance(received[-1], ListenV1Metadata)
    assert received[-1].duration == pytest.approx(len(recording.audio) / SAMPLE_RATE, abs=0.05)


# --- Pipecat ------------------------------------------------------------------------------


class PipecatRun:
    """Pipecat's own test harness pieces (the source and sink of `pipecat.tests.utils.run_test`)
    around the service, fed frame by frame so the test can wait for each answer."""

    def __init__(self, service: DeepgramSTTService) -> None:
        self.down: asyncio.Queue[Frame] = asyncio.Queue()
        self.up: asyncio.Queue[Frame] = asyncio.Queue()
        source = QueuedFrameProcessor(
            queue=self.up, queue_direction=FrameDirection.UPSTREAM, ignore_start=True
        )
        sink = QueuedFrameProcessor(
            queue=self.down, queue_direction=FrameDirection.DOWNSTREAM, ignore_start=True
        )
        self.worker = PipelineWorker(
            Pipeline([source, service, sink]),
            cancel_on_idle_timeout=False,
            params=PipelineParams(audio_in_sample_rate=SAMPLE_RATE),
        )
        self.started = asyncio.Event()
        self.frames: list[Frame] = []

        @self.worker.event_handler("on_pipeline_started")
        async def _started(*_: object) -> None:
            self.started.set()

    async def push(self, frame: Frame) -> None:
        await self.worker.queue_frame(frame)

    async def next_transcription(self) -> TranscriptionFrame:
        while True:
            frame = await self.down.get()
            self.frames.append(frame)
            if isinstance(frame, TranscriptionFrame):
                return frame


async def test_pipecat_turns_two_sentences_into_two_transcriptions(whisper_server: str) -> None:
    service = DeepgramSTTService(api_key=KEY, base_url=f"ws://{whisper_server}")
    run = PipecatRun(service)
    runner = WorkerRunner()
    await runner.add_workers(run.worker)
    running = asyncio.create_task(runner.run())
    transcriptions: list[TranscriptionFrame] = []
    try:
        await asyncio.wait_for(run.started.wait(), 30)
        for sentence in SENTENCES[:2]:
            await run.push(VADUserStartedSpeakingFrame())
            async for pcm in paced(pcm_frames(sentence_audio(sentence))):
                await run.push(
                    InputAudioRawFrame(audio=pcm, sample_rate=SAMPLE_RATE, num_channels=1)
                )
            await run.push(VADUserStoppedSpeakingFrame())  # Pipecat sends Finalize
            transcriptions.append(await asyncio.wait_for(run.next_transcription(), ANSWER_TIMEOUT))
        await run.push(EndFrame())
        await asyncio.wait_for(running, 60)
    finally:
        if not running.done():
            await runner.cancel()
        await asyncio.gather(running, return_exceptions=True)

    while not run.down.empty():
        run.frames.append(run.down.get_nowait())
    upstream = [run.up.get_nowait() for _ in range(run.up.qsize())]
    assert not [f for f in upstream if isinstance(f, ErrorFrame)]
    finals = [f for f in run.frames if isinstance(f, TranscriptionFrame)]
    assert finals == transcriptions  # exactly one per sentence
    for frame, sentence in zip(transcriptions, SENTENCES[:2], strict=True):
        assert word_error_rate(sentence, frame.text) <= MAX_WER, frame.text
        assert frame.finalized  # the Results answered Pipecat's Finalize (from_finalize)
    assert all(
        isinstance(f.text, str) for f in run.frames if isinstance(f, InterimTranscriptionFrame)
    )


# --- LiveKit Agents -----------------------------------------------------------------------


async def test_livekit_plugin_turns_two_sentences_into_two_finals(whisper_server: str) -> None:
    events: list[lk_stt.SpeechEvent] = []
    finals: asyncio.Queue[lk_stt.SpeechEvent] = asyncio.Queue()
    async with aiohttp.ClientSession() as session:
        plugin = lk_deepgram.STT(
            api_key=KEY, base_url=f"http://{whisper_server}/v1/listen", http_session=session
        )
        stream = plugin.stream()

        async def read() -> None:
            async for event in stream:
                events.append(event)
                if event.type is lk_stt.SpeechEventType.FINAL_TRANSCRIPT:
                    finals.put_nowait(event)

        reader = asyncio.create_task(read())
        texts: list[str] = []
        try:
            for sentence in SENTENCES[:2]:
                async for pcm in paced(pcm_frames(sentence_audio(sentence))):
                    samples = len(pcm) // 2
                    stream.push_frame(
                        rtc.AudioFrame(
                            data=pcm,
                            sample_rate=SAMPLE_RATE,
                            num_channels=1,
                            samples_per_channel=samples,
                        )
                    )
                stream.flush()  # the plugin sends Finalize
                event = await asyncio.wait_for(finals.get(), ANSWER_TIMEOUT)
                texts.append(event.alternatives[0].text)
            stream.end_input()  # Finalize, then CloseStream
            await asyncio.wait_for(reader, ANSWER_TIMEOUT)
        finally:
            await stream.aclose()
            await plugin.aclose()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    kinds = [e.type for e in events]
    assert kinds.count(lk_stt.SpeechEventType.FINAL_TRANSCRIPT) == 2
    # Each turn's final also ends the speech (speech_final).
    assert kinds.count(lk_stt.SpeechEventType.END_OF_SPEECH) == 2
    assert kinds.count(lk_stt.SpeechEventType.START_OF_SPEECH) == 2
    for text, sentence in zip(texts, SENTENCES[:2], strict=True):
        assert word_error_rate(sentence, text) <= MAX_WER, text
