"""Pipeline stages: VAD → ASR → Sink."""
