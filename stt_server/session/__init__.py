"""One streaming connection, whatever dialect it speaks: receive loop, pipeline, endings."""
