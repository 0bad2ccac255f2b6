//! What the training rows say before any training: each feature's statistics, for the
//! model to standardize its input with, and the warnings a file that looks like a mistake
//! gets (an index column as the label, an empty class, feature scales far apart).
use crate::cli::csv::Dataset;
use crate::pb;

/// Each feature's mean and standard deviation over the training rows (the held-out rows
/// must not leak into them), for the model to standardize its input with. A constant
/// feature keeps std 1.
pub(super) fn statistics(data: &Dataset, train_rows: &[usize]) -> pb::Standardization {
    let d = data.dim;
    let n = train_rows.len().max(1) as f64;
    let mut mean = vec![0.0; d];
    for &r in train_rows {
        for (m, x) in mean.iter_mut().zip(data.row(r)) {
            *m += x / n;
        }
    }
    let mut var = vec![0.0; d];
    for &r in train_rows {
        for ((v, x), m) in var.iter_mut().zip(data.row(r)).zip(&mean) {
            *v += (x - m) * (x - m) / n;
        }
    }
    let std = var
        .iter()
        .map(|v| if *v > 0.0 { v.sqrt() } else { 1.0 })
        .collect();
    pb::Standardization { mean, std }
}

/// What in the data looks like a mistake, as warnings to print before training: a label
/// column that is an index (a class per row), classes with no row, features whose scales
/// differ by orders of magnitude without --standardize.
pub(super) fn warnings(data: &Dataset, standardize: bool) -> Vec<String> {
    let mut out = Vec::new();
    let rows = data.rows();
    if data.classes as usize >= rows && rows > 2 {
        out.push(format!(
            "{} classes for {rows} rows: is the label column an index or an id (a pandas \
             to_csv() writes its index first)? Choose the label with --label-column N",
            data.classes
        ));
    }
    let mut seen = vec![false; data.classes as usize];
    for &l in &data.labels {
        if let Some(s) = seen.get_mut(l as usize) {
            *s = true;
        }
    }
    let empty: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .map(|(c, _)| c.to_string())
        .collect();
    if !empty.is_empty() && out.is_empty() {
        out.push(format!(
            "no row has class {} (labels are class indices from 0: do they start at 1?)",
            empty.join(", ")
        ));
    }
    if !standardize && rows > 1 {
        let spread: Vec<f64> = (0..data.dim)
            .map(|j| {
                let (lo, hi) = (0..rows)
                    .map(|r| data.row(r)[j])
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                        (a.min(v), b.max(v))
                    });
                hi - lo
            })
            .filter(|s| *s > 0.0)
            .collect();
        let (small, large) = spread
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), &s| (a.min(s), b.max(s)));
        if large / small >= 1e3 {
            out.push(format!(
                "feature ranges differ by a factor of {:.0e} (from {small:.3} to {large:.3}): \
                 consider --standardize",
                large / small
            ));
        }
    }
    out
}
