//! Semi-global alignment of the end of one token sequence against the start of another.
//!
//! A streaming recogniser transcribes overlapping audio chunks, so the words at the end of the
//! transcript so far reappear (maybe garbled) at the start of the next chunk's text. The DP
//! below scores a suffix of `prev` against a prefix of `new` with local-alignment flooring, so
//! the overlap may start anywhere in `prev` and a few garbled words at the head of `new` cost
//! nothing. The stitch point is the first matched pair on the best path.

/// Scores of the alignment DP. Mismatches and gaps share one penalty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scoring {
    /// Reward for two equal tokens aligned to each other (> 0).
    pub match_reward: f64,
    /// Penalty for a mismatch or a gap (<= 0).
    pub gap_penalty: f64,
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring {
            match_reward: 3.0,
            gap_penalty: -1.0,
        }
    }
}

/// Why a [`Scoring`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoringError(pub String);

impl std::fmt::Display for ScoringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScoringError {}

impl Scoring {
    /// A scoring with the given values, checked: a non-positive match reward or a positive gap
    /// penalty would make every pair of sequences "overlap", which is never what a caller means.
    pub fn new(match_reward: f64, gap_penalty: f64) -> Result<Self, ScoringError> {
        if !(match_reward.is_finite() && match_reward > 0.0) {
            return Err(ScoringError(format!(
                "match_reward must be a finite number > 0, got {match_reward}"
            )));
        }
        if !(gap_penalty.is_finite() && gap_penalty <= 0.0) {
            return Err(ScoringError(format!(
                "gap_penalty must be a finite number <= 0, got {gap_penalty}"
            )));
        }
        Ok(Scoring {
            match_reward,
            gap_penalty,
        })
    }
}

/// One DP cell: the best score of a path ending here, and where that path's first match is.
#[derive(Clone, Copy)]
struct Cell {
    score: f64,
    /// (index in prev, index in new) of the path's first matched pair; `None` when score is 0.
    start: Option<(usize, usize)>,
}

const EMPTY: Cell = Cell {
    score: 0.0,
    start: None,
};

/// Finds where `new` overlaps the end of `prev`.
///
/// Returns `Some((cut_prev, cut_new))` such that `prev[..cut_prev] ++ new[cut_new..]` is the
/// merged sequence, or `None` when there is no overlap (best score <= 0 or an empty side).
///
/// Time O(len(prev) * len(new)), memory O(len(new)): every path that scores above zero starts
/// with a match (a gap or mismatch from zero is floored back to zero), so each cell carries the
/// position of its path's first match and no traceback matrix is needed.
///
/// ```
/// use strops::{align_overlap, Scoring};
/// let prev = ["The", "quick", "brown", "fox"];
/// let new = ["wn", "fox", "jumps"];
/// assert_eq!(align_overlap(&prev, &new, Scoring::default()), Some((3, 1)));
/// ```
pub fn align_overlap<T: PartialEq>(
    prev: &[T],
    new: &[T],
    scoring: Scoring,
) -> Option<(usize, usize)> {
    if prev.is_empty() || new.is_empty() {
        return None;
    }
    let m = new.len();
    let mut above = vec![EMPTY; m + 1];
    let mut row = vec![EMPTY; m + 1];
    for (i, p) in prev.iter().enumerate() {
        row[0] = EMPTY;
        for (j, n) in new.iter().enumerate() {
            let diag = above[j];
            let is_match = p == n;
            let diag_score = diag.score
                + if is_match {
                    scoring.match_reward
                } else {
                    scoring.gap_penalty
                };
            let up = above[j + 1].score + scoring.gap_penalty;
            let left = row[j].score + scoring.gap_penalty;
            // Ties prefer the diagonal (more aligned pairs), then the gap in `new`.
            let cell = if diag_score > 0.0 && diag_score >= up && diag_score >= left {
                let start = match diag.start {
                    Some(s) if diag.score > 0.0 => Some(s),
                    _ if is_match => Some((i, j)),
                    _ => None,
                };
                Cell {
                    score: diag_score,
                    start,
                }
            } else if up > 0.0 && up >= left {
                Cell {
                    score: up,
                    start: above[j + 1].start,
                }
            } else if left > 0.0 {
                Cell {
                    score: left,
                    start: row[j].start,
                }
            } else {
                EMPTY
            };
            row[j + 1] = cell;
        }
        std::mem::swap(&mut above, &mut row);
    }
    // `above` now holds the last row of prev: the overlap must reach the end of prev. Ties keep
    // the earliest end in `new`, the shortest reading of the overlap.
    let mut best = EMPTY;
    for cell in above.iter().skip(1) {
        if cell.score > best.score {
            best = *cell;
        }
    }
    if best.score > 0.0 {
        best.start
    } else {
        None
    }
}

/// Merges `new` into `prev` at their overlap, or appends it when there is none.
///
/// ```
/// use strops::{merge_by_overlap, Scoring};
/// let merged = merge_by_overlap(&["The", "quick", "brown", "fox"], &["brown", "fox", "jumps"], Scoring::default());
/// assert_eq!(merged, ["The", "quick", "brown", "fox", "jumps"]);
/// ```
pub fn merge_by_overlap<T: PartialEq + Clone>(prev: &[T], new: &[T], scoring: Scoring) -> Vec<T> {
    let (cut_prev, cut_new) = align_overlap(prev, new, scoring).unwrap_or((prev.len(), 0));
    let mut merged = Vec::with_capacity(cut_prev + new.len() - cut_new);
    merged.extend_from_slice(&prev[..cut_prev]);
    merged.extend_from_slice(&new[cut_new..]);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    fn merge(prev: &str, new: &str) -> String {
        merge_by_overlap(&words(prev), &words(new), Scoring::default()).join(" ")
    }

    #[test]
    fn seed_examples() {
        assert_eq!(
            merge("The quick brown fox", "brown fox jumps"),
            "The quick brown fox jumps"
        );
        assert_eq!(
            merge("The quick brown fox", "wn fox jumps"),
            "The quick brown fox jumps"
        );
    }

    #[test]
    fn no_overlap_concatenates() {
        assert_eq!(merge("a b c", "d e f"), "a b c d e f");
        assert_eq!(
            align_overlap(&words("a b c"), &words("d e f"), Scoring::default()),
            None
        );
    }

    #[test]
    fn empty_sides() {
        let empty: Vec<&str> = vec![];
        assert_eq!(align_overlap(&empty, &words("a"), Scoring::default()), None);
        assert_eq!(align_overlap(&words("a"), &empty, Scoring::default()), None);
        assert_eq!(
            merge_by_overlap(&empty, &words("a b"), Scoring::default()),
            words("a b")
        );
        assert_eq!(
            merge_by_overlap(&words("a b"), &empty, Scoring::default()),
            words("a b")
        );
    }

    #[test]
    fn overlap_must_reach_the_end_of_prev() {
        // Two matches (6) pay for up to five unmatched words at the end of prev (-1 each);
        // six are too many and the sequences are simply joined.
        assert_eq!(
            align_overlap(&words("a b c x y z w"), &words("b c d"), Scoring::default()),
            Some((1, 0))
        );
        assert_eq!(
            align_overlap(
                &words("a b c x y z w v u"),
                &words("b c d"),
                Scoring::default()
            ),
            None
        );
    }

    #[test]
    fn new_words_replace_prev_tail_after_the_stitch() {
        // The new chunk saw more context and corrected "fax" to "fox".
        assert_eq!(
            merge("the quick brown fax", "quick brown fox jumps"),
            "the quick brown fox jumps"
        );
    }

    #[test]
    fn garbled_head_of_new_is_dropped() {
        assert_eq!(
            merge("one two three four", "ee xx three four five"),
            "one two three four five"
        );
    }

    #[test]
    fn ties_take_the_earliest_end_in_new() {
        assert_eq!(
            align_overlap(
                &words("x the"),
                &words("the cat the dog"),
                Scoring::default()
            ),
            Some((1, 0))
        );
    }

    #[test]
    fn custom_scoring_changes_the_verdict() {
        let prev = words("a b c x");
        let new = words("b c d");
        assert_eq!(align_overlap(&prev, &new, Scoring::default()), Some((1, 0)));
        // With a harsh gap penalty the trailing "x" outweighs the two matches.
        assert_eq!(
            align_overlap(&prev, &new, Scoring::new(1.0, -5.0).unwrap()),
            None
        );
    }

    #[test]
    fn scoring_is_validated() {
        assert!(Scoring::new(0.0, -1.0).is_err());
        assert!(Scoring::new(f64::NAN, -1.0).is_err());
        assert!(Scoring::new(3.0, 0.5).is_err());
        assert!(Scoring::new(3.0, f64::NEG_INFINITY).is_err());
        assert!(Scoring::new(3.0, 0.0).is_ok());
    }

    #[test]
    fn every_split_of_distinct_tokens_round_trips() {
        let w: Vec<u32> = (0..12).collect();
        for k in 0..=w.len() {
            for j in 0..k {
                if k - j < 2 {
                    continue;
                }
                let merged = merge_by_overlap(&w[..k], &w[j..], Scoring::default());
                assert_eq!(merged, w, "k={k} j={j}");
            }
        }
    }

    #[test]
    fn large_inputs_use_little_memory_and_finish() {
        let prev: Vec<u32> = (0..3000).collect();
        let new: Vec<u32> = (2990..4000).collect();
        let merged = merge_by_overlap(&prev, &new, Scoring::default());
        assert_eq!(merged, (0..4000).collect::<Vec<u32>>());
    }
}
