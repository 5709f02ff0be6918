"""Prometheus metrics of the process, one registry, served at `GET /metrics`.

Label sets are small and bounded: codes, kinds, outcomes and device names, never session ids.
Every layer records into these objects; nothing here imports the rest of the package.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)  # collections per generation: full ones stall the event loop

# Latencies of interest run from milliseconds (VAD, overhead) to tens of seconds (backlog).
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Finer where an agent's budget lies (a flushed turn's final within ~300 ms), so a p99 can be
# read from the buckets to the 10-50 ms.
_FINAL_LATENCY = (
    *(0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75),
    *(1, 1.5, 1.6, 1.75, 2, 3, 5, 10),
)

MODEL_INFO = Info(
    "stt_model", "The engine, model and devices this process serves", registry=REGISTRY
)
SESSIONS_OPEN = Gauge(
    "stt_sessions_open", "Open streaming sessions", ["endpoint"], registry=REGISTRY
)
SESSIONS_STARTED = Counter(
    "stt_sessions_started", "Streaming sessions accepted", ["endpoint"], registry=REGISTRY
)
SESSIONS_ENDED = Counter(
    "stt_sessions_ended",
    "Streaming sessions ended, by outcome (an ending or an error code) and close code",
    ["endpoint", "outcome", "close_code"],
    registry=REGISTRY,
)
SESSIONS_REFUSED = Counter(
    "stt_sessions_refused", "Sessions refused before they started", ["code"], registry=REGISTRY
)
AUDIO_SECONDS = Counter(
    "stt_audio_received_seconds", "Audio received, after conversion to 16 kHz", registry=REGISTRY
)
MESSAGES_IN = Counter(
    "stt_messages_received", "Client messages received", ["kind"], registry=REGISTRY
)
BYTES_IN = Counter("stt_bytes_received", "Bytes of client messages received", registry=REGISTRY)
ERRORS = Counter("stt_errors", "Errors reported to clients, by code", ["code"], registry=REGISTRY)
SEGMENTS = Counter(
    "stt_segments_sent",
    "Transcripts sent, by kind (interim, tentative, final)",
    ["kind"],
    registry=REGISTRY,
)
BATCHES = Counter(
    "stt_inference_batches",
    "Engine calls (batches or decode steps)",
    ["device"],
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "stt_inference_batch_size",
    "Requests per engine batch",
    ["device"],
    buckets=_BATCH,
    registry=REGISTRY,
)
ENGINE_SECONDS = Histogram(
    "stt_engine_seconds", "Engine time per batch", ["device"], buckets=_LATENCY, registry=REGISTRY
)
QUEUE_WAIT = Histogram(
    "stt_inference_queue_wait_seconds",
    "Time a request waited before the engine took it",
    ["priority"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
INTERIMS_SKIPPED = Counter(
    "stt_interims_skipped",
    "Interim decodes skipped because the engine was busy, or kept busy by finals lately",
    registry=REGISTRY,
)
SPECULATIONS = Counter(
    "stt_speculative_decodes",
    "Speculative decodes of a turn's end, by outcome: ready (done when its chunk was cut), "
    "awaited (still running then), discarded (the speaker went on)",
    ["outcome"],
    registry=REGISTRY,
)
WHISPER_FALLBACKS = Counter(
    "stt_whisper_fallback_decodes",
    "Whisper windows decoded again at a higher temperature (repetitive or improbable text)",
    registry=REGISTRY,
)
FINAL_LATENCY = Histogram(
    "stt_final_latency_seconds",
    "End of speech (or the client's flush, if later) to the final transcript being sent",
    buckets=_FINAL_LATENCY,
    registry=REGISTRY,
)
VAD_BATCH_SIZE = Histogram(
    "stt_vad_batch_rows",
    "Sessions' windows per batched Silero run",
    buckets=_BATCH,
    registry=REGISTRY,
)
VAD_SECONDS = Histogram(
    "stt_vad_seconds", "Time of one batched Silero run", buckets=_LATENCY, registry=REGISTRY
)
