"""Command-line programs shipped with the server."""
