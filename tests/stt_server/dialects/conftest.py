from tests.stt_server.api.conftest import full_recording, openai_server, short_recording

__all__ = ["full_recording", "openai_server", "short_recording"]
