//! Models: a spec (validated, defaults explicit), a net of named parameters that records
//! its graph for a batch, and an optimizer; [`Model`] ties them together with a step
//! count, and [`AnyModel`] picks the dtype at run time.
//!
//! - [`spec`]: what a model is, its defaults and validation.
//! - [`init`]: seeded, machine-independent initialization.
//! - [`param`]: named parameters and the finiteness check their values pass.
//! - [`net`]: forward and backward for a batch.
//! - [`optim`]: the update rules (SGD, momentum, RMSProp, Adam, AdamW), one file each, and the
//!   optimizer state they update all-or-nothing.
//! - `check`: the range checks spec values go through.
//! - [`trace`]: a labelled batch's graph as data, for introspection (TraceStep).
pub mod any;
mod check;
pub mod init;
pub mod net;
pub mod optim;
pub mod param;
pub mod spec;
pub mod trace;

use ndarray::{ArrayD, ArrayView2};

pub use any::AnyModel;
pub use net::{Gradients, Losses, Net, Target, accuracy, predictions};
pub use optim::{Adam, AdamW, Momentum, Optimizer, OptimizerSpec, RmsProp, Sgd};
pub use param::Param;
pub use spec::{ActivationSpec, DType, HiddenSpec, InitSpec, LossSpec, ModelSpec};

use crate::engine::error::{EngineError, Result};
use crate::engine::gradcheck::{self, Elements, TensorCheck};
use crate::engine::scalar::Scalar;

/// What a training step reports.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Losses of the batch before the update.
    pub losses: Losses,
    pub accuracy: f64,
    /// The step count after the update.
    pub step: u64,
}

/// A net, its optimizer state and its step count.
#[derive(Debug, Clone, PartialEq)]
pub struct Model<T> {
    net: Net<T>,
    optimizer: Optimizer<T>,
    step: u64,
}

impl<T: Scalar> Model<T> {
    pub fn new(spec: ModelSpec) -> Result<Self> {
        Ok(Self::from_net(Net::new(spec)?))
    }

    /// A model with the given parameter values (in `spec.parameter_shapes()` order, e.g.
    /// restored from a checkpoint), fresh optimizer state and step 0. The spec is
    /// validated, and every value must have its parameter's shape and be finite.
    pub fn from_values(spec: ModelSpec, values: Vec<ArrayD<T>>) -> Result<Self> {
        spec.validate()?;
        let net = Net::from_values(spec, values)?;
        for p in net.params() {
            param::check_finite(&p.name, &p.value)?;
        }
        Ok(Self::from_net(net))
    }

    /// A model restored whole from a checkpoint: parameter values (in
    /// `spec.parameter_shapes()` order), optimizer state slots (see
    /// [`Optimizer::from_state`]), Adam's t and the step count. Everything is validated,
    /// so the restored model continues training exactly as the saved one would have.
    pub fn from_state(
        spec: ModelSpec,
        values: Vec<ArrayD<T>>,
        slots: Vec<Vec<ArrayD<T>>>,
        t: u64,
        step: u64,
    ) -> Result<Self> {
        let Model { net, .. } = Self::from_values(spec, values)?;
        let optimizer = Optimizer::from_state(net.spec().optimizer, net.params(), slots, t)?;
        Ok(Model {
            net,
            optimizer,
            step,
        })
    }

    fn from_net(net: Net<T>) -> Self {
        let optimizer = Optimizer::new(net.spec().optimizer, net.params());
        Model {
            net,
            optimizer,
            step: 0,
        }
    }

    pub fn net(&self) -> &Net<T> {
        &self.net
    }

    pub fn optimizer(&self) -> &Optimizer<T> {
        &self.optimizer
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    /// Forward, backward and one update on a labelled batch; nothing changes on error.
    pub fn train_step(&mut self, x: ArrayView2<'_, T>, labels: &[usize]) -> Result<StepReport> {
        self.train_step_at(x, labels, None)
    }

    /// As [`train_step`](Self::train_step), at learning rate `lr` instead of the spec's
    /// for this step when given (a schedule's step).
    pub fn train_step_at(
        &mut self,
        x: ArrayView2<'_, T>,
        labels: &[usize],
        lr: Option<f64>,
    ) -> Result<StepReport> {
        let next = self.next_step()?;
        let g = self.net.gradients(x, Target::Labels(labels), false)?;
        self.optimizer
            .update_at(self.net.params_mut(), &g.params, lr)?;
        self.step = next;
        Ok(StepReport {
            losses: g.losses,
            accuracy: accuracy(&predictions(&g.scores.view()), labels),
            step: self.step,
        })
    }

    /// One update with caller-supplied gradients, named; every parameter exactly once.
    pub fn apply_gradients(&mut self, named: Vec<(String, ArrayD<T>)>) -> Result<u64> {
        let params = self.net.params();
        let mut slots: Vec<Option<ArrayD<T>>> = params.iter().map(|_| None).collect();
        for (name, g) in named {
            let field = format!("gradients[{name}]");
            let i = params.iter().position(|p| p.name == name).ok_or_else(|| {
                EngineError::Parameter {
                    field: field.clone(),
                    reason: format!("no parameter is named {name:?}"),
                }
            })?;
            if g.shape() != params[i].value.shape() {
                return Err(EngineError::shape(
                    field,
                    format!("{:?}", params[i].value.shape()),
                    g.shape(),
                ));
            }
            if slots[i].replace(g).is_some() {
                return Err(EngineError::Parameter {
                    field,
                    reason: "given more than once".into(),
                });
            }
        }
        let grads = slots
            .into_iter()
            .zip(params)
            .map(|(g, p)| {
                g.ok_or_else(|| EngineError::Parameter {
                    field: "gradients".into(),
                    reason: format!("missing the gradient of {:?}", p.name),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let next = self.next_step()?;
        self.optimizer.update(self.net.params_mut(), &grads)?;
        self.step = next;
        Ok(self.step)
    }

    /// The step count after one more update, or an error (before anything changes) if
    /// the count is at its maximum: possible only for an imported model.
    fn next_step(&self) -> Result<u64> {
        self.step
            .checked_add(1)
            .ok_or_else(|| EngineError::Parameter {
                field: "step".into(),
                reason: "the model's step count is at its maximum; no further update is possible"
                    .into(),
            })
    }

    /// Numeric vs analytic gradients of the total loss, in f64, per parameter.
    pub fn gradient_check(
        &self,
        x: ArrayView2<'_, T>,
        labels: &[usize],
        elements: Elements,
    ) -> Result<Vec<TensorCheck>> {
        let mut net = self.net.cast::<f64>();
        let x = x.mapv(|v| v.as_f64());
        let analytic = net
            .gradients(x.view(), Target::Labels(labels), false)?
            .params;
        gradcheck::check(
            &mut net,
            &analytic,
            elements,
            |net, k| &mut net.params_mut()[k].value,
            |net| {
                Ok(net
                    .evaluate(x.view(), labels)?
                    .1
                    .total()
                    .unwrap_or(f64::NAN))
            },
        )
    }
}
