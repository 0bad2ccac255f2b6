//! `create_model_*`: random specs against the documented rules.
use super::*;

/// Sometimes set.
pub(crate) fn maybe<T: Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![2 => Just(None), 3 => s.prop_map(Some)].boxed()
}

/// Rarely set (an option that does not apply where it is).
pub(crate) fn rarely<T: Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![15 => Just(None), 1 => s.prop_map(Some)].boxed()
}

/// An enum's wire value: usually one of `0..=max`, sometimes unknown.
pub(crate) fn enum_value(max: i32) -> BoxedStrategy<i32> {
    prop_oneof![
        14 => 0..=max,
        1 => Just(max + 1),
        1 => Just(-1),
        1 => any::<i32>(),
    ]
    .boxed()
}

/// A value meant for [0, 1): usually inside, sometimes 1, ±0 or anything nasty.
pub(crate) fn ratio() -> BoxedStrategy<f64> {
    prop_oneof![8 => 0.0f64..0.999, 1 => Just(1.0), 1 => Just(-0.0), 1 => number()].boxed()
}

/// A value meant to be > 0: usually a sane one, sometimes 0, negative, NaN, subnormal,
/// beyond f32 or beyond everything.
pub(crate) fn positive() -> BoxedStrategy<f64> {
    prop_oneof![
        8 => 1e-4f64..1.0,
        1 => Just(0.0),
        1 => Just(-1.0),
        1 => Just(1e39),
        1 => Just(1e300),
        1 => number(),
    ]
    .boxed()
}

pub(crate) fn units() -> BoxedStrategy<u32> {
    prop_oneof![
        10 => 1u32..=6,
        1 => Just(0),
        1 => Just(1 << 24),
        1 => Just((1 << 24) + 1),
        1 => Just(u32::MAX),
        1 => any::<u32>(),
    ]
    .boxed()
}

pub(crate) fn hidden_layer() -> BoxedStrategy<pb::HiddenLayer> {
    (units(), enum_value(7))
        .prop_flat_map(|(units, activation)| {
            let pieces = prop_oneof![
                6 => 2u32..=4,
                1 => Just(0),
                1 => Just(1),
                1 => Just(MAX_PIECES),
                1 => Just(MAX_PIECES + 1),
                1 => Just(u32::MAX),
            ];
            let a = pb::Activation::try_from(activation).ok();
            let leaky_slope = if a == Some(pb::Activation::LeakyRelu) {
                maybe(ratio())
            } else {
                rarely(ratio())
            };
            let elu_alpha = if a == Some(pb::Activation::Elu) {
                maybe(positive())
            } else {
                rarely(positive())
            };
            let maxout_pieces = if a == Some(pb::Activation::Maxout) {
                maybe(pieces)
            } else {
                rarely(pieces)
            };
            (
                Just(units),
                Just(activation),
                leaky_slope,
                elu_alpha,
                maxout_pieces,
            )
        })
        .prop_map(
            |(units, activation, leaky_slope, elu_alpha, maxout_pieces)| pb::HiddenLayer {
                units,
                activation,
                leaky_slope,
                elu_alpha,
                maxout_pieces,
                gelu_approximate: None,
            },
        )
        .boxed()
}

pub(crate) fn optimizer() -> BoxedStrategy<pb::Optimizer> {
    (enum_value(5), any::<bool>())
        .prop_flat_map(|(kind, nesterov)| {
            use pb::OptimizerKind as K;
            let k = K::try_from(kind).ok();
            let pick =
                |applies: bool, s: BoxedStrategy<f64>| if applies { maybe(s) } else { rarely(s) };
            let is = |x: K| k == Some(x);
            (
                Just(kind),
                maybe(positive()),
                pick(is(K::Momentum), ratio()),
                Just(nesterov && (is(K::Momentum) || kind % 7 == 3)),
                pick(is(K::Rmsprop), ratio()),
                pick(is(K::Adam) || is(K::Adamw), ratio()),
                pick(is(K::Adam) || is(K::Adamw), ratio()),
                pick(is(K::Adam) || is(K::Adamw) || is(K::Rmsprop), positive()),
                pick(is(K::Adamw), positive()),
            )
        })
        .prop_map(
            |(
                kind,
                learning_rate,
                momentum,
                nesterov,
                decay_rate,
                beta1,
                beta2,
                epsilon,
                weight_decay,
            )| {
                pb::Optimizer {
                    kind,
                    learning_rate,
                    momentum,
                    nesterov,
                    decay_rate,
                    beta1,
                    beta2,
                    epsilon,
                    weight_decay,
                }
            },
        )
        .boxed()
}

pub(crate) fn init() -> BoxedStrategy<pb::Init> {
    (enum_value(3), any::<u64>())
        .prop_flat_map(|(scheme, seed)| {
            let weight_scale = if scheme == pb::InitScheme::Gaussian as i32 {
                maybe(positive())
            } else {
                rarely(positive())
            };
            (Just(scheme), weight_scale, Just(seed))
        })
        .prop_map(|(scheme, weight_scale, seed)| pb::Init {
            scheme,
            weight_scale,
            seed,
        })
        .boxed()
}

pub(crate) fn model_spec() -> BoxedStrategy<Option<pb::ModelSpec>> {
    let input_dim = prop_oneof![
        10 => 1u32..=8,
        1 => Just(0),
        1 => Just(1 << 24),
        1 => Just((1 << 24) + 1),
        1 => Just(u32::MAX),
        1 => any::<u32>(),
    ];
    let num_classes = prop_oneof![
        10 => 2u32..=6,
        1 => Just(0),
        1 => Just(1),
        1 => Just(1 << 24),
        1 => any::<u32>(),
    ];
    // Around the depth limit: many one-unit layers.
    let deep =
        (MAX_DEPTH - 1..=MAX_DEPTH + 2).prop_map(|n| vec![hidden(1, pb::Activation::Tanh); n]);
    let hidden_layers = prop_oneof![12 => vec(hidden_layer(), 0..=3), 1 => deep];
    let l2 = prop_oneof![6 => Just(0.0), 3 => 0.0f64..0.1, 1 => number()];
    let spec = (
        (input_dim, hidden_layers, num_classes, any::<bool>()),
        enum_value(2).prop_flat_map(|loss| {
            let margin = if loss == pb::LossKind::Softmax as i32 {
                rarely(positive())
            } else {
                maybe(positive())
            };
            (Just(loss), margin)
        }),
        l2,
        maybe(optimizer()),
        maybe(init()),
        enum_value(2),
        // A standardization (its lengths and values rarely right) and class names.
        (
            rarely(
                (vec(number(), 0..6), vec(number(), 0..6))
                    .prop_map(|(mean, std)| pb::Standardization { mean, std }),
            ),
            prop_oneof![6 => Just(vec![]), 1 => vec("[a-c]{0,2}", 0..5)],
        ),
    )
        .prop_map(
            |(
                (input_dim, hidden, num_classes, no_bias),
                (loss, svm_margin),
                l2,
                optimizer,
                init,
                dtype,
                (standardize, class_names),
            )| {
                pb::ModelSpec {
                    input_dim,
                    hidden,
                    num_classes,
                    no_bias,
                    loss,
                    svm_margin,
                    l2,
                    optimizer,
                    init,
                    dtype,
                    standardize,
                    class_names,
                }
            },
        );
    prop_oneof![30 => spec.prop_map(Some), 1 => Just(None)].boxed()
}

/// The same spec with every rule obeyed: small dims, known enum values, options only where
/// they apply, hyper-parameters in range. What is left random (activations, losses,
/// optimizers, dtypes, which options are set, seeds) must then always be accepted.
pub(crate) fn sanitized(s: Option<pb::ModelSpec>) -> Option<pb::ModelSpec> {
    use pb::{Activation as A, OptimizerKind as K};
    let mut s = s?;
    let pos = |v: &mut Option<f64>| {
        if let Some(x) = v
            && !(*x > 0.0 && *x <= 1e3)
        {
            *x = 0.5;
        }
    };
    let unit = |v: &mut Option<f64>| {
        if let Some(x) = v
            && !(0.0..1.0).contains(x)
        {
            *x = 0.5;
        }
    };
    s.input_dim = 1 + s.input_dim % 8;
    s.num_classes = 2 + s.num_classes % 5;
    s.hidden.truncate(3);
    for h in &mut s.hidden {
        h.units = 1 + h.units % 6;
        h.activation = h.activation.rem_euclid(8);
        let a = A::try_from(h.activation).ok();
        unit(&mut h.leaky_slope);
        pos(&mut h.elu_alpha);
        h.maxout_pieces = h.maxout_pieces.map(|p| 2 + p % 3);
        if a != Some(A::LeakyRelu) {
            h.leaky_slope = None;
        }
        if a != Some(A::Elu) {
            h.elu_alpha = None;
        }
        if a != Some(A::Maxout) {
            h.maxout_pieces = None;
        }
    }
    s.loss = s.loss.rem_euclid(3);
    pos(&mut s.svm_margin);
    if s.loss == pb::LossKind::Softmax as i32 {
        s.svm_margin = None;
    }
    if !(s.l2 >= 0.0 && s.l2 <= 1.0) {
        s.l2 = 0.0;
    }
    if let Some(o) = &mut s.optimizer {
        o.kind = o.kind.rem_euclid(6);
        let k = K::try_from(o.kind).ok();
        pos(&mut o.learning_rate);
        pos(&mut o.epsilon);
        pos(&mut o.weight_decay);
        for v in [
            &mut o.momentum,
            &mut o.decay_rate,
            &mut o.beta1,
            &mut o.beta2,
        ] {
            unit(v);
        }
        if k != Some(K::Momentum) {
            (o.momentum, o.nesterov) = (None, false);
        }
        if k != Some(K::Rmsprop) {
            o.decay_rate = None;
        }
        if !matches!(k, Some(K::Adam | K::Adamw)) {
            (o.beta1, o.beta2) = (None, None);
        }
        if !matches!(k, Some(K::Adam | K::Adamw | K::Rmsprop)) {
            o.epsilon = None;
        }
        if k != Some(K::Adamw) {
            o.weight_decay = None;
        }
    }
    if let Some(i) = &mut s.init {
        i.scheme = i.scheme.rem_euclid(4);
        pos(&mut i.weight_scale);
        if i.scheme != pb::InitScheme::Gaussian as i32 {
            i.weight_scale = None;
        }
    }
    s.dtype = s.dtype.rem_euclid(3);
    // A standardization of the (now small) input width, and a distinct name per class.
    let d = s.input_dim as usize;
    if let Some(st) = &mut s.standardize {
        st.mean = (0..d).map(|j| j as f64 - 1.5).collect();
        st.std = (0..d).map(|j| 0.5 + j as f64).collect();
    }
    if !s.class_names.is_empty() {
        s.class_names = (0..s.num_classes).map(|c| format!("class {c}")).collect();
    }
    Some(s)
}

/// What the contract (the `.proto`'s comments, plus the server's fixed bounds on dims,
/// depth and maxout pieces) says about a spec.
#[derive(Debug, PartialEq)]
pub(crate) enum SpecVerdict {
    /// Valid, with this many parameters (within the fuzz server's limit).
    Valid(u64),
    /// Valid, but more parameters than the server takes: RESOURCE_EXHAUSTED.
    TooBig,
    /// Breaks a rule: INVALID_ARGUMENT.
    Invalid,
}

pub(crate) fn spec_verdict(spec: &Option<pb::ModelSpec>) -> SpecVerdict {
    use pb::{Activation as A, OptimizerKind as K};
    let Some(s) = spec else {
        return SpecVerdict::Invalid;
    };
    let pos = |v: f64| v > 0.0 && v.is_finite();
    let unit = |v: f64| (0.0..1.0).contains(&v);
    let mut ok = s.input_dim >= 1 && s.num_classes >= 2 && s.hidden.len() <= MAX_DEPTH;
    ok &= (s.input_dim as u64) <= MAX_DIM && (s.num_classes as u64) <= MAX_DIM;
    for h in &s.hidden {
        let a = A::try_from(h.activation).ok();
        ok &= a.is_some() && h.units >= 1 && (h.units as u64) <= MAX_DIM;
        ok &= h
            .leaky_slope
            .is_none_or(|v| a == Some(A::LeakyRelu) && unit(v));
        ok &= h.elu_alpha.is_none_or(|v| a == Some(A::Elu) && pos(v));
        ok &= h
            .maxout_pieces
            .is_none_or(|p| a == Some(A::Maxout) && (2..=MAX_PIECES).contains(&p));
    }
    let softmax = s.loss == pb::LossKind::Softmax as i32;
    ok &= (0..=2).contains(&s.loss);
    ok &= s.svm_margin.is_none_or(|m| !softmax && pos(m));
    ok &= s.l2 >= 0.0 && s.l2.is_finite();
    if let Some(o) = &s.optimizer {
        let k = K::try_from(o.kind).ok();
        ok &= k.is_some();
        ok &= o.learning_rate.is_none_or(pos);
        ok &= o.momentum.is_none_or(|v| k == Some(K::Momentum) && unit(v));
        ok &= !o.nesterov || k == Some(K::Momentum);
        ok &= o
            .decay_rate
            .is_none_or(|v| k == Some(K::Rmsprop) && unit(v));
        let adam = matches!(k, Some(K::Adam | K::Adamw));
        ok &= o.beta1.is_none_or(|v| adam && unit(v));
        ok &= o.beta2.is_none_or(|v| adam && unit(v));
        ok &= o
            .epsilon
            .is_none_or(|v| matches!(k, Some(K::Adam | K::Adamw | K::Rmsprop)) && pos(v));
        ok &= o
            .weight_decay
            .is_none_or(|v| k == Some(K::Adamw) && v >= 0.0 && v.is_finite());
    }
    if let Some(i) = &s.init {
        let gaussian = i.scheme == pb::InitScheme::Gaussian as i32;
        ok &= (0..=3).contains(&i.scheme);
        ok &= i.weight_scale.is_none_or(|v| gaussian && pos(v));
    }
    ok &= (0..=2).contains(&s.dtype);
    // A standardization: input_dim finite means and finite positive stds (the dimension
    // bound is far above what this strategy draws with one).
    if let Some(st) = &s.standardize {
        let d = s.input_dim as usize;
        ok &= st.mean.len() == d && st.std.len() == d;
        ok &= st.mean.iter().all(|m| m.is_finite());
        ok &= st.std.iter().all(|v| v.is_finite() && *v > 0.0);
    }
    // Class names: none, or one distinct name of 1..=128 bytes per class.
    let names = &s.class_names;
    if !names.is_empty() {
        ok &= names.len() == s.num_classes as usize;
        ok &= names.iter().all(|n| (1..=128).contains(&n.len()));
        ok &= names
            .iter()
            .enumerate()
            .all(|(i, n)| !names[..i].contains(n));
    }
    if !ok {
        return SpecVerdict::Invalid;
    }
    // Parameters: per layer (fan_in·units + units if biased) × pieces.
    let mut fan_in = s.input_dim as u128;
    let mut total = 0u128;
    let layers = s
        .hidden
        .iter()
        .map(|h| {
            (
                h.units as u128,
                if h.activation == A::Maxout as i32 {
                    h.maxout_pieces.unwrap_or(2) as u128
                } else {
                    1
                },
            )
        })
        .chain([(s.num_classes as u128, 1)]);
    for (units, pieces) in layers {
        total += (fan_in * units + if s.no_bias { 0 } else { units }) * pieces;
        fan_in = units;
    }
    if total > u64::MAX as u128 {
        SpecVerdict::Invalid
    } else if total > MAX_PARAMETERS as u128 {
        SpecVerdict::TooBig
    } else {
        SpecVerdict::Valid(total as u64)
    }
}

/// Whether the spec asks for Gaussian weights with a scale so large that some draws may
/// overflow the dtype: then the server may refuse it (INVALID_ARGUMENT on
/// spec.init.weight_scale), depending on the draws; see
/// `create_model_refuses_a_weight_scale_whose_weights_overflow`.
pub(crate) fn huge_scale(s: &pb::ModelSpec) -> bool {
    let limit = if s.dtype == pb::Dtype::F64 as i32 {
        1e300
    } else {
        1e36
    };
    s.init
        .as_ref()
        .and_then(|i| i.weight_scale)
        .is_some_and(|w| w > limit)
}

pub(crate) fn create_case(h: &Harness, spec: Option<pb::ModelSpec>) -> Result<(), TestCaseError> {
    h.case(async {
        let mut c = h.client();
        let verdict = spec_verdict(&spec);
        let r = within(
            "CreateModel",
            c.create_model(pb::CreateModelRequest {
                spec: spec.clone(),
                ..Default::default()
            }),
        )
        .await?;
        let kind = match verdict {
            SpecVerdict::Valid(_) => "valid",
            SpecVerdict::TooBig => "too big",
            SpecVerdict::Invalid => "invalid",
        };
        tally("CreateModel specs", kind, &code_of(&r));
        tally("CreateModel specs", "any", &code_of(&r));
        let created = match (r, verdict) {
            (Err(s), v) => {
                check_refusal("CreateModel", &s)?;
                let overflowed = matches!(v, SpecVerdict::Valid(_))
                    && spec.as_ref().is_some_and(huge_scale)
                    && s.code() == Code::InvalidArgument
                    && s.message().starts_with("spec.init.weight_scale");
                let want = match v {
                    _ if overflowed => Code::InvalidArgument,
                    SpecVerdict::Valid(_) => Code::Ok,
                    SpecVerdict::TooBig => Code::ResourceExhausted,
                    SpecVerdict::Invalid => Code::InvalidArgument,
                };
                prop_assert_eq!(s.code(), want, "CreateModel: {:?}", s);
                None
            }
            (Ok(r), SpecVerdict::Valid(n)) => Some((r, n)),
            (Ok(r), v) => {
                return Err(fail(format!(
                    "CreateModel: created {r:?}, but the spec is {v:?}"
                )));
            }
        };
        if let Some((r, n)) = created {
            let spec = spec.expect("valid specs are present");
            prop_assert_eq!(r.parameter_count, n, "parameter_count");
            let filled = r.spec.clone().expect("the echoed spec");
            prop_assert!(
                filled.optimizer.is_some()
                    && filled.init.is_some()
                    && filled.loss != 0
                    && filled.dtype != 0,
                "defaults not filled in: {filled:?}"
            );
            prop_assert_eq!(
                (
                    filled.input_dim,
                    filled.num_classes,
                    filled.hidden.len(),
                    filled.no_bias,
                    // -0.0 is proto3's default and never goes on the wire: compare values.
                    filled.l2 + 0.0
                ),
                (
                    spec.input_dim,
                    spec.num_classes,
                    spec.hidden.len(),
                    spec.no_bias,
                    spec.l2 + 0.0
                )
            );
            let id = r.model_id.clone();
            let got = values(&mut c, &id, "a new model").await?;
            prop_assert_eq!(
                got.spec.as_ref(),
                Some(&filled),
                "GetModel spec vs the echoed one"
            );
            prop_assert_eq!(got.step, 0);
            let sizes: u64 = got
                .parameters
                .iter()
                .map(|p| p.shape.iter().map(|&d| d as u64).product::<u64>())
                .sum();
            prop_assert_eq!(sizes, n, "the parameters' sizes");
            let f64 = filled.dtype == pb::Dtype::F64 as i32;
            for p in &got.parameters {
                let v = p.value.as_ref().expect("values");
                prop_assert_eq!(v.values_f64.is_empty(), !f64, "{} dtype field", &p.name);
            }
            if let Some(p) = non_finite(&got) {
                return Err(fail(format!(
                    "{}: a new model holds a non-finite value",
                    p.name
                )));
            }
            // It computes: a 2-row batch gives 2×C scores.
            let d = spec.input_dim as usize;
            let x = pb::Tensor {
                shape: vec![2, spec.input_dim],
                values: (0..2 * d).map(|i| (i % 7) as f32 * 0.25 - 0.5).collect(),
                values_f64: vec![],
                ..Default::default()
            };
            let f = within(
                "Forward",
                c.forward(pb::ForwardRequest {
                    model_id: id.clone(),
                    x: Some(x),
                    labels: vec![],
                    ..Default::default()
                }),
            )
            .await?
            .map_err(|s| fail(format!("Forward on a new model: {s:?}")))?;
            let scores = f.scores.expect("scores");
            prop_assert_eq!(scores.shape, vec![2, spec.num_classes]);
            prop_assert_eq!(
                scores.values.len() + scores.values_f64.len(),
                2 * spec.num_classes as usize
            );
            // Deleted once, then gone.
            within(
                "DeleteModel",
                c.delete_model(pb::DeleteModelRequest {
                    model_id: id.clone(),
                }),
            )
            .await?
            .map_err(|s| fail(format!("DeleteModel: {s:?}")))?;
            let again = within(
                "DeleteModel",
                c.delete_model(pb::DeleteModelRequest {
                    model_id: id.clone(),
                }),
            )
            .await?;
            prop_assert_eq!(again.map(|_| ()).map_err(|s| s.code()), Err(Code::NotFound));
            let gone = within(
                "GetModel",
                c.get_model(pb::GetModelRequest {
                    model_id: id,
                    include_values: false,
                    ..Default::default()
                }),
            )
            .await?;
            prop_assert_eq!(gone.map(|_| ()).map_err(|s| s.code()), Err(Code::NotFound));
        }
        h.healthy("CreateModel").await
    })
}

#[test]
pub(crate) fn create_model_answers_every_spec_by_the_documented_rules() {
    let h = Harness::start();
    let specs = prop_oneof![2 => model_spec(), 1 => model_spec().prop_map(sanitized)];
    let shares = [("any Ok", 0.2), ("any InvalidArgument", 0.2)];
    check("CreateModel specs", 5000, specs, &shares, |spec| {
        create_case(&h, spec)
    });
    h.finish();
}

/// Regression (found by this file, fixed in 14fcb1c): `weight_scale` was only checked to be
/// finite and > 0, but the weights are `scale·N(0, 1)` rounded to the dtype, so an f32
/// model with weight_scale 1e39 (or an f64 one with f64::MAX) was created holding ±inf
/// weights, every TrainStep refused and Forward answering inf. Such a spec must be refused
/// (INVALID_ARGUMENT on spec.init.weight_scale) or create finite weights.
#[test]
pub(crate) fn create_model_refuses_a_weight_scale_whose_weights_overflow() {
    let h = Harness::start();
    h.rt.block_on(async {
        let mut c = h.client();
        for (scale, dtype) in [(1e39, pb::Dtype::F32), (f64::MAX, pb::Dtype::F64)] {
            let spec = pb::ModelSpec {
                input_dim: 2,
                num_classes: 2,
                init: Some(pb::Init {
                    scheme: pb::InitScheme::Gaussian as i32,
                    weight_scale: Some(scale),
                    seed: 1,
                }),
                dtype: dtype as i32,
                ..Default::default()
            };
            match c
                .create_model(pb::CreateModelRequest {
                    spec: Some(spec),
                    ..Default::default()
                })
                .await
            {
                Err(s) => support::assert_invalid(&s, "spec.init.weight_scale"),
                Ok(r) => {
                    let id = r.into_inner().model_id;
                    let got = support::get_values(&mut c, &id).await;
                    if let Some(p) = non_finite(&got) {
                        panic!(
                            "weight_scale {scale:e} ({dtype:?}): {} = {:?}",
                            p.name, p.value
                        );
                    }
                }
            }
        }
    });
    h.finish();
}
