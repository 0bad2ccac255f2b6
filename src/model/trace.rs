//! A net's graph for one labelled batch, as data: forward and backward of the total loss
//! `L = data loss + R` without changing the net, every node kept (see `engine::trace`).
use ndarray::{ArrayView2, arr0};

use super::net::{Losses, Net};
use super::spec::ModelSpec;
use crate::engine::error::{EngineError, Result};
use crate::engine::scalar::Scalar;
use crate::engine::trace::{Landmarks, Trace};

impl<T: Scalar> Net<T> {
    /// Traces the graph of `x` and `labels`. The input `x` gets a gradient too, so the
    /// whole picture has one. Without `with_values` only the structure is returned.
    pub fn trace(
        &self,
        x: ArrayView2<'_, T>,
        labels: &[usize],
        with_values: bool,
    ) -> Result<(Trace<T>, Losses)> {
        let pass = self.pass(x, Some(labels), true, true)?;
        let loss = pass.loss.ok_or_else(|| EngineError::Parameter {
            field: "labels".into(),
            reason: "a trace needs the loss".into(),
        })?;
        let marks = Landmarks {
            scores: Some(pass.scores),
            data_loss: pass.data_loss,
            reg_loss: pass.reg_loss,
            loss: Some(loss),
        };
        let trace =
            pass.graph
                .trace(vec![(loss, arr0(T::one()).into_dyn())], marks, with_values)?;
        Ok((trace, pass.losses()))
    }
}

/// The largest node value (in elements) a batch of `rows` records for `spec`: the batch,
/// a parameter, or a layer's N×units output. Cheap: from the spec alone.
pub fn largest_value(spec: &ModelSpec, rows: usize) -> (String, usize) {
    let mut best = ("x".to_string(), rows.saturating_mul(spec.input_dim));
    let mut consider = |what: String, n: usize| {
        if n > best.1 {
            best = (what, n);
        }
    };
    for p in spec.parameter_shapes() {
        consider(p.name, p.shape.iter().product());
    }
    for (i, h) in spec.hidden.iter().enumerate() {
        consider(format!("layers.{i} output"), rows.saturating_mul(h.units));
    }
    consider("scores".into(), rows.saturating_mul(spec.num_classes));
    best
}
