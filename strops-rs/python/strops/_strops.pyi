from collections.abc import Sequence

__all__ = ["align_overlap", "merge_by_overlap"]

def align_overlap(
    prev: Sequence[str],
    new: Sequence[str],
    match_reward: float = 3.0,
    gap_penalty: float = -1.0,
) -> tuple[int, int] | None:
    """Where ``new`` overlaps the end of ``prev``.

    Returns ``(cut_prev, cut_new)`` such that ``prev[:cut_prev] + new[cut_new:]`` is the merge,
    or None when there is no overlap (best score <= 0, or an empty side). Compare normalised
    keys here and stitch the original tokens with the cuts to keep casing and punctuation.
    Raises TypeError for non-str items or a bare str, ValueError for an invalid scoring
    (``match_reward`` must be > 0, ``gap_penalty`` <= 0, both finite).
    """

def merge_by_overlap(
    prev: Sequence[str],
    new: Sequence[str],
    match_reward: float = 3.0,
    gap_penalty: float = -1.0,
) -> list[str]:
    """``prev`` and ``new`` stitched at their overlap, or concatenated when there is none."""
