"""Word-sequence merging by semi-global alignment (Rust core, pyo3 bindings).

A streaming recogniser transcribes overlapping audio chunks; the end of the transcript so far
reappears, maybe garbled, at the start of the next chunk's text. ``align_overlap`` finds that
overlap and ``merge_by_overlap`` stitches the two at it.
"""

from strops._strops import align_overlap, merge_by_overlap

__all__ = ["align_overlap", "merge_by_overlap"]
