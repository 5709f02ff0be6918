"""Real-time speech-to-text WebSocket server: VAD → ASR → Sink per connection."""

__version__ = "0.1.0"
