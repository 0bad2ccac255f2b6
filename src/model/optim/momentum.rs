//! SGD with momentum: `v = μv − lr·dw; w += v`; Nesterov's form (CS231n's): `w += −μ·v_prev
//! + (1 + μ)·v`, the same velocity with a look-ahead step.
use ndarray::{ArrayD, Zip};
use serde::{Deserialize, Serialize};

use super::rule::{Rule, Slot, Staged};
use crate::engine::error::Result;
use crate::engine::scalar::Scalar;
use crate::model::check::{positive, unit};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Momentum {
    pub lr: f64,
    /// μ, in [0, 1).
    pub momentum: f64,
    pub nesterov: bool,
}

impl Default for Momentum {
    /// lr 1e-2, μ 0.9, plain (not Nesterov) momentum.
    fn default() -> Self {
        Momentum {
            lr: 1e-2,
            momentum: 0.9,
            nesterov: false,
        }
    }
}

/// The velocity v (slot 0).
const SLOTS: &[Slot] = &[Slot::signed("momentum")];

impl Rule for Momentum {
    fn kind(&self) -> &'static str {
        "momentum"
    }

    fn slots(&self) -> &'static [Slot] {
        SLOTS
    }

    fn validate(&self) -> Result<()> {
        positive("spec.optimizer.learning_rate", self.lr)?;
        unit("spec.optimizer.momentum", self.momentum)
    }

    fn stage<T: Scalar>(
        &self,
        w: &ArrayD<T>,
        g: &ArrayD<T>,
        state: &[&ArrayD<T>],
        _: u64,
    ) -> Staged<T> {
        let (lr, mu) = (T::of(self.lr), T::of(self.momentum));
        let v_prev = state[0];
        let v = Zip::from(v_prev)
            .and(g)
            .map_collect(|&v, &g| mu * v - lr * g);
        let value = if self.nesterov {
            Zip::from(w)
                .and(v_prev)
                .and(&v)
                .map_collect(|&w, &vp, &v| w - mu * vp + (T::one() + mu) * v)
        } else {
            w + &v
        };
        Staged {
            value,
            state: vec![v],
        }
    }
}
