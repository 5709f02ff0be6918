"""Whole audio files: decode an upload, cut it at pauses, transcribe the pieces in order."""
