//! Optimizers between the wire and the model: each kind takes the fields it uses, with
//! the rule's `Default` for what is unset, and a field its kind does not use is refused.
use tonic::Status;

use crate::model::{Adam, AdamW, Momentum, OptimizerSpec, RmsProp, Sgd};
use crate::pb;
use crate::service::status::invalid;

/// Each kind takes the fields it uses (the rule's `Default` filling what is unset); any
/// field left set does not apply to that kind and is refused, so a new kind needs no list
/// of where each field applies.
pub fn optimizer_from_proto(mut o: pb::Optimizer) -> Result<OptimizerSpec, Status> {
    let kind = pb::OptimizerKind::try_from(o.kind).map_err(|_| {
        invalid(
            "spec.optimizer.kind",
            format!("unknown optimizer {}", o.kind),
        )
    })?;
    let lr = |o: &mut pb::Optimizer, default: f64| o.learning_rate.take().unwrap_or(default);
    let take = |field: &mut Option<f64>, default: f64| field.take().unwrap_or(default);
    let spec = match kind {
        pb::OptimizerKind::Unspecified | pb::OptimizerKind::Sgd => {
            let d = Sgd::default();
            OptimizerSpec::Sgd(Sgd {
                lr: lr(&mut o, d.lr),
            })
        }
        pb::OptimizerKind::Momentum => {
            let d = Momentum::default();
            OptimizerSpec::Momentum(Momentum {
                lr: lr(&mut o, d.lr),
                momentum: take(&mut o.momentum, d.momentum),
                nesterov: std::mem::take(&mut o.nesterov),
            })
        }
        pb::OptimizerKind::Rmsprop => {
            let d = RmsProp::default();
            OptimizerSpec::RmsProp(RmsProp {
                lr: lr(&mut o, d.lr),
                decay: take(&mut o.decay_rate, d.decay),
                eps: take(&mut o.epsilon, d.eps),
            })
        }
        pb::OptimizerKind::Adam => {
            let d = Adam::default();
            OptimizerSpec::Adam(Adam {
                lr: lr(&mut o, d.lr),
                beta1: take(&mut o.beta1, d.beta1),
                beta2: take(&mut o.beta2, d.beta2),
                eps: take(&mut o.epsilon, d.eps),
            })
        }
        pb::OptimizerKind::Adamw => {
            let d = AdamW::default();
            OptimizerSpec::AdamW(AdamW {
                lr: lr(&mut o, d.lr),
                beta1: take(&mut o.beta1, d.beta1),
                beta2: take(&mut o.beta2, d.beta2),
                eps: take(&mut o.epsilon, d.eps),
                weight_decay: take(&mut o.weight_decay, d.weight_decay),
            })
        }
    };
    // Every field but the kind, so that one added to the message cannot be forgotten
    // here (the pattern has no `..`).
    let pb::Optimizer {
        kind: _,
        learning_rate,
        momentum,
        nesterov,
        decay_rate,
        beta1,
        beta2,
        epsilon,
        weight_decay,
    } = o;
    let left = [
        ("learning_rate", learning_rate.is_some()),
        ("momentum", momentum.is_some()),
        ("nesterov", nesterov),
        ("decay_rate", decay_rate.is_some()),
        ("beta1", beta1.is_some()),
        ("beta2", beta2.is_some()),
        ("epsilon", epsilon.is_some()),
        ("weight_decay", weight_decay.is_some()),
    ];
    match left.iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(invalid(
            format!("spec.optimizer.{name}"),
            format!("does not apply to {}", kind.as_str_name()),
        )),
        None => Ok(spec),
    }
}

/// The wire form of an optimizer, every field of its kind explicit.
pub fn optimizer_to_proto(o: &OptimizerSpec) -> pb::Optimizer {
    match *o {
        OptimizerSpec::Sgd(Sgd { lr }) => pb::Optimizer {
            kind: pb::OptimizerKind::Sgd as i32,
            learning_rate: Some(lr),
            ..Default::default()
        },
        OptimizerSpec::Momentum(Momentum {
            lr,
            momentum,
            nesterov,
        }) => pb::Optimizer {
            kind: pb::OptimizerKind::Momentum as i32,
            learning_rate: Some(lr),
            momentum: Some(momentum),
            nesterov,
            ..Default::default()
        },
        OptimizerSpec::RmsProp(RmsProp { lr, decay, eps }) => pb::Optimizer {
            kind: pb::OptimizerKind::Rmsprop as i32,
            learning_rate: Some(lr),
            decay_rate: Some(decay),
            epsilon: Some(eps),
            ..Default::default()
        },
        OptimizerSpec::Adam(Adam {
            lr,
            beta1,
            beta2,
            eps,
        }) => pb::Optimizer {
            kind: pb::OptimizerKind::Adam as i32,
            learning_rate: Some(lr),
            beta1: Some(beta1),
            beta2: Some(beta2),
            epsilon: Some(eps),
            ..Default::default()
        },
        OptimizerSpec::AdamW(AdamW {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        }) => pb::Optimizer {
            kind: pb::OptimizerKind::Adamw as i32,
            learning_rate: Some(lr),
            beta1: Some(beta1),
            beta2: Some(beta2),
            epsilon: Some(eps),
            weight_decay: Some(weight_decay),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod optimizer_fields {
    //! Which wire fields each optimizer kind takes, AdamW's in particular.
    use super::*;
    use crate::model::ModelSpec;
    use crate::service::convert::{spec_from_proto, spec_to_proto};

    fn spec(o: pb::Optimizer) -> Result<ModelSpec, Status> {
        spec_from_proto(Some(pb::ModelSpec {
            input_dim: 3,
            num_classes: 2,
            optimizer: Some(o),
            ..Default::default()
        }))
    }

    fn adamw(o: pb::Optimizer) -> pb::Optimizer {
        pb::Optimizer {
            kind: pb::OptimizerKind::Adamw as i32,
            ..o
        }
    }

    #[test]
    fn adamw_takes_adams_fields_and_weight_decay_with_pytorchs_defaults() {
        let d = spec(adamw(pb::Optimizer::default())).unwrap();
        assert_eq!(
            d.optimizer,
            OptimizerSpec::AdamW(AdamW {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
            })
        );
        let set = spec(adamw(pb::Optimizer {
            learning_rate: Some(0.02),
            beta1: Some(0.8),
            beta2: Some(0.99),
            epsilon: Some(1e-6),
            weight_decay: Some(0.0),
            ..Default::default()
        }))
        .unwrap();
        let want = OptimizerSpec::AdamW(AdamW {
            lr: 0.02,
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
            weight_decay: 0.0,
        });
        assert_eq!(set.optimizer, want);
        let wire = spec_to_proto(&set).optimizer.unwrap();
        assert_eq!(wire.weight_decay, Some(0.0));
        assert_eq!(spec(wire).unwrap().optimizer, want);
    }

    #[test]
    fn a_field_is_refused_where_its_kind_does_not_use_it() {
        use pb::OptimizerKind as K;
        for k in [K::Unspecified, K::Sgd, K::Momentum, K::Rmsprop, K::Adam] {
            let e = spec(pb::Optimizer {
                kind: k as i32,
                weight_decay: Some(0.01),
                ..Default::default()
            })
            .unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert_eq!(
                e.message(),
                format!(
                    "spec.optimizer.weight_decay: does not apply to {}",
                    k.as_str_name()
                )
            );
        }
        for (o, field) in [
            (
                pb::Optimizer {
                    momentum: Some(0.9),
                    ..Default::default()
                },
                "momentum",
            ),
            (
                pb::Optimizer {
                    nesterov: true,
                    ..Default::default()
                },
                "nesterov",
            ),
            (
                pb::Optimizer {
                    decay_rate: Some(0.9),
                    ..Default::default()
                },
                "decay_rate",
            ),
        ] {
            let e = spec(adamw(o)).unwrap_err();
            assert_eq!(
                e.message(),
                format!("spec.optimizer.{field}: does not apply to OPTIMIZER_KIND_ADAMW")
            );
        }
    }

    #[test]
    fn a_weight_decay_below_zero_or_not_finite_is_refused() {
        for bad in [-0.1, f64::NAN, f64::INFINITY] {
            let e = spec(adamw(pb::Optimizer {
                weight_decay: Some(bad),
                ..Default::default()
            }))
            .unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(
                e.message().starts_with("spec.optimizer.weight_decay: "),
                "{bad}: {}",
                e.message()
            );
        }
    }
}
