"""Wire dialects: our own protocol (`/ws/transcribe`) and the ones agents already speak."""
