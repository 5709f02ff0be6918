//! strops: merging overlapping word sequences, for stitching chunked transcripts.
//!
//! The core ([`align_overlap`], [`merge_by_overlap`]) is plain Rust, tested by `cargo test`;
//! the `python` feature adds the pyo3 module that maturin builds as `strops._strops`.

mod align;
#[cfg(feature = "python")]
mod python;

pub use align::{align_overlap, merge_by_overlap, Scoring, ScoringError};
