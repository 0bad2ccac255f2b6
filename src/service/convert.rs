//! Wire ↔ engine conversion: specs (filling every documented default) and tensors
//! (shape plus row-major values). Decoding costs one pass at most: an f32 tensor for an
//! f32 model is moved, not copied.
use ndarray::{Array2, ArrayD, IxDyn};
use tonic::Status;

use super::status::{Reason, Refusal, invalid};
use crate::engine::ops::gelu::GeluForm;
use crate::engine::ops::{elu, leaky_relu};
use crate::engine::scalar::Scalar;
use crate::model::{
    ActivationSpec, Adam, AdamW, DType, HiddenSpec, InitSpec, LossSpec, ModelSpec, Momentum,
    OptimizerSpec, RmsProp, Sgd,
};
use crate::pb;

/// A model dtype that knows its wire form.
pub trait WireScalar: Scalar {
    fn from_f32s(v: Vec<f32>) -> Vec<Self>;
    fn from_f64s(v: Vec<f64>) -> Vec<Self>;
    fn tensor(shape: Vec<u32>, v: Vec<Self>) -> pb::Tensor;
}

impl WireScalar for f32 {
    fn from_f32s(v: Vec<f32>) -> Vec<Self> {
        v
    }
    fn from_f64s(v: Vec<f64>) -> Vec<Self> {
        v.into_iter().map(|x| x as f32).collect()
    }
    fn tensor(shape: Vec<u32>, values: Vec<Self>) -> pb::Tensor {
        pb::Tensor {
            shape,
            values,
            values_f64: Vec::new(),
        }
    }
}

impl WireScalar for f64 {
    fn from_f32s(v: Vec<f32>) -> Vec<Self> {
        v.into_iter().map(f64::from).collect()
    }
    fn from_f64s(v: Vec<f64>) -> Vec<Self> {
        v
    }
    fn tensor(shape: Vec<u32>, values_f64: Vec<Self>) -> pb::Tensor {
        pb::Tensor {
            shape,
            values: Vec::new(),
            values_f64,
        }
    }
}

/// Checks a tensor's shape against its values and a size limit, without touching the
/// values: cheap enough for the async side. Returns the shape.
pub fn check_tensor(
    t: &pb::Tensor,
    field: &str,
    max_elements: usize,
) -> Result<Vec<usize>, Status> {
    if !t.values.is_empty() && !t.values_f64.is_empty() {
        return Err(invalid(field, "set either values or values_f64, not both"));
    }
    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
    let expected = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let got = t.values.len().max(t.values_f64.len());
    // A malformed tensor (its shape overflows or disagrees with its values) is the
    // client's mistake whatever its size; only a well-formed one over the limit is the
    // retryable RESOURCE_EXHAUSTED.
    match expected {
        None => Err(invalid(field, format!("shape {:?} overflows", t.shape))),
        Some(n) if n != got => Err(invalid(
            field,
            format!("shape {:?} needs {n} values, got {got}", t.shape),
        )),
        Some(n) if n > max_elements => Err(Refusal::new(
            Reason::TensorLimit,
            format!(
                "{field}: {n} elements is more than this server's limit of {max_elements} \
                 per tensor"
            ),
        )
        .limit(
            "--max-batch-elements",
            format!("{field} has {n} elements, more than the {max_elements} a tensor may have"),
        )
        .into()),
        Some(_) => Ok(shape),
    }
}

/// Decodes a tensor (already checked with [`check_tensor`]) into the model's dtype.
pub fn tensor_values<T: WireScalar>(t: pb::Tensor, field: &str) -> Result<ArrayD<T>, Status> {
    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
    let values = if t.values_f64.is_empty() {
        T::from_f32s(t.values)
    } else {
        T::from_f64s(t.values_f64)
    };
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| invalid(field, e.to_string()))
}

/// Decodes an N×D (or N×C) matrix.
pub fn matrix<T: WireScalar>(t: pb::Tensor, field: &str) -> Result<Array2<T>, Status> {
    if t.shape.len() != 2 {
        return Err(invalid(
            field,
            format!("expected a matrix shape [rows, cols], got {:?}", t.shape),
        ));
    }
    tensor_values::<T>(t, field)?
        .into_dimensionality()
        .map_err(|e| invalid(field, e.to_string()))
}

/// Encodes an array in row-major order; moves the buffer when it already is.
pub fn to_tensor<T: WireScalar, D: ndarray::Dimension>(a: ndarray::Array<T, D>) -> pb::Tensor {
    let shape = a.shape().iter().map(|&d| d as u32).collect();
    let len = a.len();
    let values = if a.is_standard_layout() {
        // The buffer may extend past the array at either end (an owned slice of a larger
        // array); keep exactly the array's elements, in place.
        let (mut v, offset) = a.into_raw_vec_and_offset();
        v.drain(..offset.unwrap_or(0));
        v.truncate(len);
        v
    } else {
        a.iter().copied().collect()
    };
    T::tensor(shape, values)
}

pub fn labels(v: Vec<u32>) -> Vec<usize> {
    v.into_iter().map(|l| l as usize).collect()
}

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
    let dtype = match pb::Dtype::try_from(s.dtype) {
        Ok(pb::Dtype::Unspecified | pb::Dtype::F32) => DType::F32,
        Ok(pb::Dtype::F64) => DType::F64,
        Err(_) => return Err(invalid("spec.dtype", format!("unknown dtype {}", s.dtype))),
    };
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

/// Each kind takes the fields it uses (the rule's `Default` filling what is unset); any
/// field left set does not apply to that kind and is refused, so a new kind needs no list
/// of where each field applies.
fn optimizer_from_proto(mut o: pb::Optimizer) -> Result<OptimizerSpec, Status> {
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
    let optimizer = match s.optimizer {
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
        optimizer: Some(optimizer),
        init: Some(pb::Init {
            scheme: scheme as i32,
            weight_scale,
            seed: s.seed,
        }),
        dtype: match s.dtype {
            DType::F32 => pb::Dtype::F32,
            DType::F64 => pb::Dtype::F64,
        } as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, s};

    #[test]
    fn to_tensor_sends_only_the_arrays_elements() {
        let full = Array2::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f32);
        // Rows 1..3 of an owned array: contiguous, but its buffer holds rows 0 and 3 too.
        let middle = full.clone().slice_move(s![1..3, ..]);
        let t = to_tensor(middle);
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.values, vec![3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(to_tensor(full.clone()).values.len(), 12);
        assert_eq!(
            to_tensor(full.reversed_axes()).values[..4],
            [0.0, 3.0, 6.0, 9.0]
        );
    }
}

#[cfg(test)]
mod optimizer_fields {
    //! Which wire fields each optimizer kind takes, AdamW's in particular.
    use super::*;

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

#[cfg(test)]
mod kinds {
    //! The model's kinds pinned to the proto's enums: every wire value has a model kind
    //! and comes back as itself, so a kind added on one side only fails here.
    use super::*;

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
