//! What an update rule is: its per-parameter state slots and its update, computed into
//! fresh buffers. [`Optimizer`](super::Optimizer) keeps the state and commits an update
//! only when every parameter's is finite; a rule only does the math.
use ndarray::ArrayD;

use crate::engine::error::Result;
use crate::engine::scalar::Scalar;

/// One per-parameter state tensor of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The tensor's suffix in a checkpoint: slot `s` of parameter `p` is stored as
    /// `{p}.{s.name}` (`layers.0.weight.adam_m`). Files hold these names, so a slot is
    /// never renamed.
    pub name: &'static str,
    /// A running average of squared gradients: its square root is taken, so it is never
    /// negative, and restored state with a negative value is refused.
    pub squares: bool,
}

impl Slot {
    /// A slot that may hold any finite value (a velocity, a first moment).
    pub const fn signed(name: &'static str) -> Self {
        Slot {
            name,
            squares: false,
        }
    }
    /// A running average of squared gradients, ≥ 0.
    pub const fn squares(name: &'static str) -> Self {
        Slot {
            name,
            squares: true,
        }
    }
}

/// One parameter's value and state after an update, before it is committed.
#[derive(Debug)]
pub struct Staged<T> {
    pub value: ArrayD<T>,
    /// One tensor per slot, in [`Rule::slots`] order.
    pub state: Vec<ArrayD<T>>,
}

/// An update rule: its hyper-parameters are the implementing struct (whose `Default`
/// holds the documented defaults), and it is listed once, in
/// [`OptimizerSpec`](crate::model::OptimizerSpec).
pub trait Rule {
    /// The rule's name: the spec's JSON `kind`, the CLI's choice and, upper-cased, the
    /// suffix of its proto enum value (`adamw` ↔ `OPTIMIZER_KIND_ADAMW`).
    fn kind(&self) -> &'static str;

    /// The per-parameter state the rule keeps, in the order [`stage`](Self::stage)
    /// reads and returns it (and a checkpoint lists it).
    fn slots(&self) -> &'static [Slot];

    /// Checks every hyper-parameter; the error names the wire field
    /// (`spec.optimizer.beta1`).
    fn validate(&self) -> Result<()>;

    /// Parameter `w`'s new value and state after gradient `g`, given its current state
    /// (one tensor per slot, every one of `w`'s shape) and the step count `t` of this
    /// update (1 for the first). Pure: nothing is committed here.
    fn stage<T: Scalar>(
        &self,
        w: &ArrayD<T>,
        g: &ArrayD<T>,
        state: &[&ArrayD<T>],
        t: u64,
    ) -> Staged<T>;
}
