//! Specs between the wire and the model, every documented default filled in on the way
//! in (from each kind's `Default` where it has one) and every field explicit on the way
//! out. The optimizer's part is [`super::optimizer`].
use tonic::Status;

use super::optimizer::{optimizer_from_proto, optimizer_to_proto};
use crate::engine::ops::gelu::GeluForm;
use crate::engine::ops::{elu, leaky_relu};
use crate::model::spec::Standardization;
use crate::model::{ActivationSpec, DType, HiddenSpec, InitSpec, LossSpec, ModelSpec};
use crate::pb;
use crate::service::status::invalid;

/// The engine spec for a wire spec, with every unset field given its documented default.
pub fn spec_from_proto(s: Option<pb::ModelSpec>) -> Result<ModelSpec, Status> {
    let s = s.ok_or_else(|| invalid("spec", "required"))?;
    let hidden = s
        .hidden
        .iter()
        .enumerate()
        .map(|(i, h)| hidden_from_proto(i, h))
        .collect::<Result<Vec<_>, _>>()?;
    let loss = match pb::LossKind::try_from(s.loss) {
        Ok(pb::LossKind::Unspecified | pb::LossKind::Svm) => LossSpec::Svm {
            margin: s.svm_margin.unwrap_or(1.0),
        },
        Ok(pb::LossKind::Softmax) if s.svm_margin.is_some() => {
            return Err(invalid("spec.svm_margin", "only applies to LOSS_KIND_SVM"));
        }
        Ok(pb::LossKind::Softmax) => LossSpec::Softmax,
        Err(_) => return Err(invalid("spec.loss", format!("unknown loss {}", s.loss))),
    };
    let init = s.init.unwrap_or_default();
    let init_spec = match pb::InitScheme::try_from(init.scheme) {
        Ok(pb::InitScheme::Gaussian) => InitSpec::Gaussian {
            scale: init.weight_scale.unwrap_or(1e-2),
        },
        Ok(_) if init.weight_scale.is_some() => {
            return Err(invalid(
                "spec.init.weight_scale",
                "only applies to INIT_SCHEME_GAUSSIAN",
            ));
        }
        Ok(pb::InitScheme::Unspecified) => InitSpec::Auto,
        Ok(pb::InitScheme::He) => InitSpec::He,
        Ok(pb::InitScheme::Xavier) => InitSpec::Xavier,
        Err(_) => {
            return Err(invalid(
                "spec.init.scheme",
                format!("unknown scheme {}", init.scheme),
            ));
        }
    };
    let dtype = dtype_from_proto("spec.dtype", s.dtype)?;
    let spec = ModelSpec {
        input_dim: s.input_dim as usize,
        hidden,
        num_classes: s.num_classes as usize,
        bias: !s.no_bias,
        loss,
        l2: s.l2,
        optimizer: optimizer_from_proto(s.optimizer.unwrap_or_default())?,
        init: init_spec,
        seed: init.seed,
        dtype,
        standardize: s.standardize.map(|st| Standardization {
            mean: st.mean,
            std: st.std,
        }),
        class_names: s.class_names,
    };
    spec.validate()?;
    Ok(spec)
}

fn hidden_from_proto(i: usize, h: &pb::HiddenLayer) -> Result<HiddenSpec, Status> {
    let field = |name: &str| format!("spec.hidden[{i}].{name}");
    let kind = pb::Activation::try_from(h.activation).map_err(|_| {
        invalid(
            field("activation"),
            format!("unknown activation {}", h.activation),
        )
    })?;
    let only = |set: bool, name: &str, applies: &str| {
        if set {
            Err(invalid(field(name), format!("only applies to {applies}")))
        } else {
            Ok(())
        }
    };
    if kind != pb::Activation::LeakyRelu {
        only(
            h.leaky_slope.is_some(),
            "leaky_slope",
            "ACTIVATION_LEAKY_RELU",
        )?;
    }
    if kind != pb::Activation::Elu {
        only(h.elu_alpha.is_some(), "elu_alpha", "ACTIVATION_ELU")?;
    }
    if kind != pb::Activation::Gelu {
        only(
            h.gelu_approximate.is_some(),
            "gelu_approximate",
            "ACTIVATION_GELU",
        )?;
    }
    if kind != pb::Activation::Maxout {
        only(
            h.maxout_pieces.is_some(),
            "maxout_pieces",
            "ACTIVATION_MAXOUT",
        )?;
    }
    let activation = match kind {
        pb::Activation::Unspecified | pb::Activation::Relu => ActivationSpec::Relu,
        pb::Activation::Sigmoid => ActivationSpec::Sigmoid,
        pb::Activation::Tanh => ActivationSpec::Tanh,
        pb::Activation::LeakyRelu => ActivationSpec::LeakyRelu {
            slope: h.leaky_slope.unwrap_or(leaky_relu::DEFAULT_SLOPE),
        },
        pb::Activation::Elu => ActivationSpec::Elu {
            alpha: h.elu_alpha.unwrap_or(elu::DEFAULT_ALPHA),
        },
        pb::Activation::Maxout => ActivationSpec::Maxout {
            pieces: h.maxout_pieces.unwrap_or(2) as usize,
        },
        pb::Activation::Gelu => ActivationSpec::Gelu {
            form: match h.gelu_approximate.map(pb::GeluApproximate::try_from) {
                None | Some(Ok(pb::GeluApproximate::Unspecified | pb::GeluApproximate::None)) => {
                    GeluForm::Erf
                }
                Some(Ok(pb::GeluApproximate::Tanh)) => GeluForm::Tanh,
                Some(Err(_)) => {
                    return Err(invalid(
                        field("gelu_approximate"),
                        "unknown GeluApproximate value",
                    ));
                }
            },
        },
    };
    Ok(HiddenSpec {
        units: h.units as usize,
        activation,
    })
}

/// The wire form of a spec, every field explicit.
pub fn spec_to_proto(s: &ModelSpec) -> pb::ModelSpec {
    let hidden = s
        .hidden
        .iter()
        .map(|h| {
            let mut l = pb::HiddenLayer {
                units: h.units as u32,
                ..Default::default()
            };
            l.activation = match h.activation {
                ActivationSpec::Relu => pb::Activation::Relu,
                ActivationSpec::Sigmoid => pb::Activation::Sigmoid,
                ActivationSpec::Tanh => pb::Activation::Tanh,
                ActivationSpec::LeakyRelu { slope } => {
                    l.leaky_slope = Some(slope);
                    pb::Activation::LeakyRelu
                }
                ActivationSpec::Elu { alpha } => {
                    l.elu_alpha = Some(alpha);
                    pb::Activation::Elu
                }
                ActivationSpec::Maxout { pieces } => {
                    l.maxout_pieces = Some(pieces as u32);
                    pb::Activation::Maxout
                }
                ActivationSpec::Gelu { form } => {
                    l.gelu_approximate = Some(match form {
                        GeluForm::Erf => pb::GeluApproximate::None,
                        GeluForm::Tanh => pb::GeluApproximate::Tanh,
                    } as i32);
                    pb::Activation::Gelu
                }
            } as i32;
            l
        })
        .collect();
    let (loss, svm_margin) = match s.loss {
        LossSpec::Svm { margin } => (pb::LossKind::Svm, Some(margin)),
        LossSpec::Softmax => (pb::LossKind::Softmax, None),
    };
    let (scheme, weight_scale) = match s.init {
        InitSpec::Auto => (pb::InitScheme::Unspecified, None),
        InitSpec::Gaussian { scale } => (pb::InitScheme::Gaussian, Some(scale)),
        InitSpec::He => (pb::InitScheme::He, None),
        InitSpec::Xavier => (pb::InitScheme::Xavier, None),
    };
    pb::ModelSpec {
        input_dim: s.input_dim as u32,
        hidden,
        num_classes: s.num_classes as u32,
        no_bias: !s.bias,
        loss: loss as i32,
        svm_margin,
        l2: s.l2,
        optimizer: Some(optimizer_to_proto(&s.optimizer)),
        init: Some(pb::Init {
            scheme: scheme as i32,
            weight_scale,
            seed: s.seed,
        }),
        dtype: dtype_to_proto(s.dtype),
        standardize: s.standardize.as_ref().map(|st| pb::Standardization {
            mean: st.mean.clone(),
            std: st.std.clone(),
        }),
        class_names: s.class_names.clone(),
    }
}

/// A wire dtype (unspecified = f32); an unknown value is refused naming `field`.
pub fn dtype_from_proto(field: &str, dtype: i32) -> Result<DType, Status> {
    match pb::Dtype::try_from(dtype) {
        Ok(pb::Dtype::Unspecified | pb::Dtype::F32) => Ok(DType::F32),
        Ok(pb::Dtype::F64) => Ok(DType::F64),
        Err(_) => Err(invalid(field, format!("unknown dtype {dtype}"))),
    }
}

pub fn dtype_to_proto(dtype: DType) -> i32 {
    let d = match dtype {
        DType::F32 => pb::Dtype::F32,
        DType::F64 => pb::Dtype::F64,
    };
    d as i32
}

#[cfg(test)]
mod kinds {
    //! The model's kinds pinned to the proto's enums: every wire value has a model kind
    //! and comes back as itself, so a kind added on one side only fails here.
    use super::*;
    use crate::model::{Momentum, OptimizerSpec};

    fn with_layer(h: pb::HiddenLayer) -> pb::ModelSpec {
        pb::ModelSpec {
            input_dim: 3,
            num_classes: 2,
            hidden: vec![h],
            ..Default::default()
        }
    }

    #[test]
    fn every_activation_round_trips_through_the_wire() {
        let mut kinds = ActivationSpec::all().to_vec();
        kinds.push(ActivationSpec::Gelu {
            form: GeluForm::Tanh,
        });
        for act in kinds {
            let spec = spec_from_proto(Some(with_layer(pb::HiddenLayer {
                units: 4,
                ..Default::default()
            })))
            .unwrap();
            let mut spec = spec;
            spec.hidden[0].activation = act;
            let back = spec_from_proto(Some(spec_to_proto(&spec))).unwrap();
            assert_eq!(back.hidden[0].activation, act);
        }
    }

    #[test]
    fn every_wire_activation_has_a_model_kind() {
        let wire: Vec<pb::Activation> = (1..64)
            .filter_map(|i| pb::Activation::try_from(i).ok())
            .collect();
        let model: Vec<i32> = ActivationSpec::all()
            .iter()
            .map(|&a| {
                let mut s = spec_from_proto(Some(with_layer(pb::HiddenLayer {
                    units: 4,
                    ..Default::default()
                })))
                .unwrap();
                s.hidden[0].activation = a;
                spec_to_proto(&s).hidden[0].activation
            })
            .collect();
        for a in &wire {
            let spec = spec_from_proto(Some(with_layer(pb::HiddenLayer {
                units: 4,
                activation: *a as i32,
                ..Default::default()
            })))
            .unwrap_or_else(|e| panic!("{a:?}: {e}"));
            assert_eq!(
                spec_to_proto(&spec).hidden[0].activation,
                *a as i32,
                "{a:?}"
            );
            assert!(
                model.contains(&(*a as i32)),
                "{a:?} missing from ActivationSpec::all()"
            );
        }
        assert_eq!(
            wire.len(),
            model.len(),
            "ActivationSpec::all() vs the proto enum"
        );
    }

    #[test]
    fn every_model_optimizer_round_trips_through_the_wire() {
        let base = spec_from_proto(Some(with_layer(pb::HiddenLayer {
            units: 4,
            ..Default::default()
        })))
        .unwrap();
        let mut kinds = OptimizerSpec::all().to_vec();
        kinds.push(OptimizerSpec::Momentum(Momentum {
            nesterov: true,
            ..Momentum::default()
        }));
        for o in kinds {
            let spec = ModelSpec {
                optimizer: o,
                ..base.clone()
            };
            let wire = spec_to_proto(&spec).optimizer.unwrap();
            // The proto's name for a kind is the model's, upper-cased: the CLI relies on it.
            let name = pb::OptimizerKind::try_from(wire.kind)
                .unwrap()
                .as_str_name();
            assert_eq!(
                name,
                format!("OPTIMIZER_KIND_{}", o.kind_name().to_ascii_uppercase())
            );
            let back = spec_from_proto(Some(spec_to_proto(&spec))).unwrap();
            assert_eq!(back.optimizer, o);
        }
        let wire = (1..64).filter_map(|i| pb::OptimizerKind::try_from(i).ok());
        assert_eq!(
            wire.count(),
            OptimizerSpec::all().len(),
            "OptimizerSpec::all() vs the proto enum"
        );
    }

    #[test]
    fn every_wire_optimizer_has_a_model_kind() {
        for k in (1..64).filter_map(|i| pb::OptimizerKind::try_from(i).ok()) {
            let spec = spec_from_proto(Some(pb::ModelSpec {
                optimizer: Some(pb::Optimizer {
                    kind: k as i32,
                    ..Default::default()
                }),
                ..with_layer(pb::HiddenLayer {
                    units: 4,
                    ..Default::default()
                })
            }))
            .unwrap_or_else(|e| panic!("{k:?}: {e}"));
            let back = spec_to_proto(&spec);
            assert_eq!(back.optimizer.map(|o| o.kind), Some(k as i32), "{k:?}");
        }
    }
}
