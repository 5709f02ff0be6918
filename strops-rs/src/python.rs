//! The Python face of strops: thin wrappers that convert, release the GIL, and call the core.

use std::collections::HashMap;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use crate::align::{self, Scoring};

/// Reads a Python sequence of str. A bare str is refused: it would otherwise be taken as a
/// sequence of one-character words.
fn str_items(seq: &PyAny, name: &str) -> PyResult<Vec<Py<PyString>>> {
    if seq.is_instance_of::<PyString>()? {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a sequence of str, not a str"
        )));
    }
    let mut items = Vec::new();
    for item in seq.iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a sequence of str, got {}",
            type_name(seq)
        ))
    })? {
        let item = item?;
        let s: &PyString = item.downcast().map_err(|_| {
            PyTypeError::new_err(format!(
                "{name} must contain only str, found {}",
                type_name(item)
            ))
        })?;
        items.push(s.into());
    }
    Ok(items)
}

fn type_name(obj: &PyAny) -> String {
    obj.get_type()
        .name()
        .map(str::to_owned)
        .unwrap_or_else(|_| "?".to_owned())
}

/// Maps every distinct string to a small integer, so the DP compares integers and runs without
/// touching Python objects (and so without the GIL). Strings that are not valid UTF-8 (lone
/// surrogates) are keyed by their lossy form.
fn intern(py: Python<'_>, prev: &[Py<PyString>], new: &[Py<PyString>]) -> (Vec<u32>, Vec<u32>) {
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut key = |s: &Py<PyString>| -> u32 {
        let text = s.as_ref(py).to_string_lossy().into_owned();
        let next = ids.len() as u32;
        *ids.entry(text).or_insert(next)
    };
    let a = prev.iter().map(&mut key).collect();
    let b = new.iter().map(&mut key).collect();
    (a, b)
}

fn scoring(match_reward: f64, gap_penalty: f64) -> PyResult<Scoring> {
    Scoring::new(match_reward, gap_penalty).map_err(|e| PyValueError::new_err(e.0))
}

fn align_ids(
    py: Python<'_>,
    prev: &[Py<PyString>],
    new: &[Py<PyString>],
    scoring: Scoring,
) -> Option<(usize, usize)> {
    let (a, b) = intern(py, prev, new);
    py.allow_threads(move || align::align_overlap(&a, &b, scoring))
}

/// Where `new` overlaps the end of `prev`: `(cut_prev, cut_new)` with the merge being
/// `prev[:cut_prev] + new[cut_new:]`, or None when they do not overlap.
#[pyfunction(match_reward = "3.0", gap_penalty = "-1.0")]
#[pyo3(text_signature = "(prev, new, match_reward=3.0, gap_penalty=-1.0)")]
fn align_overlap(
    py: Python<'_>,
    prev: &PyAny,
    new: &PyAny,
    match_reward: f64,
    gap_penalty: f64,
) -> PyResult<Option<(usize, usize)>> {
    let scoring = scoring(match_reward, gap_penalty)?;
    let prev = str_items(prev, "prev")?;
    let new = str_items(new, "new")?;
    Ok(align_ids(py, &prev, &new, scoring))
}

/// Merges `new` into `prev` at their overlap (or appends it), returning a new list that holds
/// the original str objects.
#[pyfunction(match_reward = "3.0", gap_penalty = "-1.0")]
#[pyo3(text_signature = "(prev, new, match_reward=3.0, gap_penalty=-1.0)")]
fn merge_by_overlap(
    py: Python<'_>,
    prev: &PyAny,
    new: &PyAny,
    match_reward: f64,
    gap_penalty: f64,
) -> PyResult<Py<PyList>> {
    let scoring = scoring(match_reward, gap_penalty)?;
    let prev = str_items(prev, "prev")?;
    let new = str_items(new, "new")?;
    let (cut_prev, cut_new) = align_ids(py, &prev, &new, scoring).unwrap_or((prev.len(), 0));
    let merged: Vec<Py<PyString>> = prev[..cut_prev]
        .iter()
        .chain(&new[cut_new..])
        .map(|s| s.clone_ref(py))
        .collect();
    Ok(PyList::new(py, merged).into())
}

#[pymodule]
fn _strops(_py: Python<'_>, m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(align_overlap, m)?)?;
    m.add_function(wrap_pyfunction!(merge_by_overlap, m)?)?;
    Ok(())
}
