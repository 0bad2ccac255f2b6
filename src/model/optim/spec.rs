//! [`OptimizerSpec`]: the one list of update rules, which every per-rule fact (name,
//! state slots, validation, the update itself) is read through.
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use super::{Adam, AdamW, Momentum, RmsProp, Rule, Sgd, Slot, Staged};
use crate::engine::error::Result;
use crate::engine::scalar::Scalar;

/// The update rules, each its own type in this folder holding its
/// hyper-parameters (kept in f64, rounded to the model's dtype when applied) with their
/// defaults in its `Default`. The JSON form is the rule's fields beside
/// `"kind": "<name>"`, as checkpoints store it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerSpec {
    Sgd(Sgd),
    Momentum(Momentum),
    /// Checkpoints written before the name had one spelling say `rms_prop`.
    #[serde(alias = "rms_prop")]
    RmsProp(RmsProp),
    Adam(Adam),
    AdamW(AdamW),
}

/// Binds `$r` to the rule inside `$spec` and evaluates `$body` (the same code for every
/// rule, statically dispatched): the one list of rules every per-rule fact goes through,
/// so a rule left out is a compile error here and nowhere else.
macro_rules! with_rule {
    ($spec:expr, $r:ident => $body:expr) => {
        match $spec {
            OptimizerSpec::Sgd($r) => $body,
            OptimizerSpec::Momentum($r) => $body,
            OptimizerSpec::RmsProp($r) => $body,
            OptimizerSpec::Adam($r) => $body,
            OptimizerSpec::AdamW($r) => $body,
        }
    };
}

impl OptimizerSpec {
    /// Every rule with its defaults, in the order the proto numbers them.
    pub fn all() -> [OptimizerSpec; 5] {
        [
            OptimizerSpec::Sgd(Sgd::default()),
            OptimizerSpec::Momentum(Momentum::default()),
            OptimizerSpec::RmsProp(RmsProp::default()),
            OptimizerSpec::Adam(Adam::default()),
            OptimizerSpec::AdamW(AdamW::default()),
        ]
    }

    /// The rule's name as it appears in the spec's JSON (`"kind"`) and the CLI.
    pub fn kind_name(&self) -> &'static str {
        with_rule!(self, r => r.kind())
    }

    /// The learning rate (every rule has one).
    pub fn learning_rate(&self) -> f64 {
        with_rule!(self, r => r.lr)
    }

    /// The same rule at learning rate `lr`: what one step of a schedule uses.
    pub fn at_learning_rate(mut self, lr: f64) -> Self {
        with_rule!(&mut self, r => r.lr = lr);
        self
    }

    /// The per-parameter state slots the rule keeps, in checkpoint order.
    pub fn slots(&self) -> &'static [Slot] {
        with_rule!(self, r => r.slots())
    }

    pub(crate) fn validate(&self) -> Result<()> {
        with_rule!(self, r => r.validate())
    }

    /// Parameter `w`'s new value and state after gradient `g` (see [`Rule::stage`]).
    pub(crate) fn stage<T: Scalar>(
        &self,
        w: &ArrayD<T>,
        g: &ArrayD<T>,
        state: &[&ArrayD<T>],
        t: u64,
    ) -> Staged<T> {
        with_rule!(self, r => r.stage(w, g, state, t))
    }

    pub fn sgd() -> Self {
        OptimizerSpec::Sgd(Sgd::default())
    }
    pub fn momentum() -> Self {
        OptimizerSpec::Momentum(Momentum::default())
    }
    pub fn rmsprop() -> Self {
        OptimizerSpec::RmsProp(RmsProp::default())
    }
    pub fn adam() -> Self {
        OptimizerSpec::Adam(Adam::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optimizers_json_kind_is_its_kind_name() {
        for o in OptimizerSpec::all() {
            let json = serde_json::to_value(o).unwrap();
            assert_eq!(json["kind"], o.kind_name(), "{o:?}");
            assert_eq!(serde_json::from_value::<OptimizerSpec>(json).unwrap(), o);
        }
    }

    #[test]
    fn optimizer_json_reads_as_checkpoints_wrote_it() {
        // Field names are what checkpoint headers hold; RMSProp was written `rms_prop`
        // before the name had one spelling, and is written `rmsprop` now.
        let read = |s: &str| serde_json::from_str::<OptimizerSpec>(s).unwrap();
        assert_eq!(
            read(r#"{"kind":"rms_prop","lr":0.01,"decay":0.99,"eps":1e-8}"#),
            OptimizerSpec::rmsprop()
        );
        assert_eq!(
            serde_json::to_string(&OptimizerSpec::rmsprop()).unwrap(),
            r#"{"kind":"rmsprop","lr":0.01,"decay":0.99,"eps":1e-8}"#
        );
        assert_eq!(
            serde_json::to_string(&OptimizerSpec::adam()).unwrap(),
            r#"{"kind":"adam","lr":0.001,"beta1":0.9,"beta2":0.999,"eps":1e-8}"#
        );
        assert_eq!(
            read(r#"{"kind":"momentum","lr":0.01,"momentum":0.9,"nesterov":true}"#),
            OptimizerSpec::Momentum(Momentum {
                nesterov: true,
                ..Momentum::default()
            })
        );
        assert_eq!(read(r#"{"kind":"sgd","lr":0.01}"#), OptimizerSpec::sgd());
    }
}
