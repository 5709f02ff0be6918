"""The `stt-client` test client: stream a file or the microphone, show what the server says."""
