//! The update rules against hand-computed values, and all-or-nothing updates: a rejected
//! update or a bad batch leaves every parameter, every optimizer state slot and the step
//! count exactly as they were.

use backprop::checkpoint;
use backprop::engine::EngineError;
use backprop::engine::rng::Rng;
use backprop::model::{
    ActivationSpec, Adam, AdamW, AnyModel, DType, HiddenSpec, LossSpec, Model, ModelSpec, Momentum,
    Optimizer, OptimizerSpec, Sgd,
};
use ndarray::{Array2, ArrayD, IxDyn};
use support::engine::{all_optimizers, bits_f32, bits_f64, gaussian2, labels};

/// A 1 → 2 linear model with bias: `layers.0.weight` = [[1, −2]], `layers.0.bias` =
/// [0.5, 0]. Flattened, the parameters are p = [1, −2, 0.5, 0].
fn tiny(optimizer: OptimizerSpec) -> Model<f64> {
    let mut s = ModelSpec::new(1, vec![], 2);
    s.optimizer = optimizer;
    s.dtype = DType::F64;
    let w = ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![1.0, -2.0]).unwrap();
    let b = ArrayD::from_shape_vec(IxDyn(&[2]), vec![0.5, 0.0]).unwrap();
    Model::from_values(s, vec![w, b]).unwrap()
}

/// Named gradients from a flat [dW00, dW01, db0, db1].
fn grads(g: [f64; 4]) -> Vec<(String, ArrayD<f64>)> {
    vec![
        (
            "layers.0.weight".into(),
            ArrayD::from_shape_vec(IxDyn(&[1, 2]), g[..2].to_vec()).unwrap(),
        ),
        (
            "layers.0.bias".into(),
            ArrayD::from_shape_vec(IxDyn(&[2]), g[2..].to_vec()).unwrap(),
        ),
    ]
}

const G1: [f64; 4] = [0.5, -1.0, 2.0, 0.0];
const G2: [f64; 4] = [-1.0, 0.25, 1.0, -3.0];

fn flat(m: &Model<f64>) -> Vec<f64> {
    m.net()
        .params()
        .iter()
        .flat_map(|p| p.value.iter().copied())
        .collect()
}

/// Applies G1 then G2 and checks the parameters after each against `want`.
fn two_updates(optimizer: OptimizerSpec, want: [[f64; 4]; 2]) -> Model<f64> {
    let mut m = tiny(optimizer);
    for (k, (g, want)) in [G1, G2].into_iter().zip(want).enumerate() {
        assert_eq!(m.apply_gradients(grads(g)).unwrap(), k as u64 + 1);
        for (i, (got, w)) in flat(&m).into_iter().zip(want).enumerate() {
            assert!(
                (got - w).abs() < 1e-12,
                "{optimizer:?} update {}: element {i} is {got}, want {w}",
                k + 1
            );
        }
    }
    assert_eq!(m.step(), 2);
    m
}

#[test]
fn sgd() {
    // w −= 0.01·g: 1 − 0.005 = 0.995, then 0.995 + 0.01 = 1.005, …
    two_updates(
        OptimizerSpec::sgd(),
        [[0.995, -1.99, 0.48, 0.0], [1.005, -1.9925, 0.47, 0.03]],
    );
}

#[test]
fn momentum() {
    // v = 0.9v − 0.01g; w += v. Element 0: v1 = −0.005, w1 = 0.995;
    // v2 = −0.0045 + 0.01 = 0.0055, w2 = 1.0005.
    let m = two_updates(
        OptimizerSpec::momentum(),
        [[0.995, -1.99, 0.48, 0.0], [1.0005, -1.9835, 0.452, 0.03]],
    );
    let (slots, _) = m.optimizer().state();
    assert_eq!(slots.len(), 1, "momentum keeps one slot, the velocity");
    let v: Vec<f64> = slots[0].iter().flat_map(|a| a.iter().copied()).collect();
    for (got, want) in v.iter().zip([0.0055, 0.0065, -0.028, 0.03]) {
        assert!((got - want).abs() < 1e-15, "velocity {got} vs {want}");
    }
}

#[test]
fn nesterov_momentum() {
    // w += −μ·v_prev + (1 + μ)·v. Element 0: w1 = 1 + 1.9·(−0.005) = 0.9905;
    // w2 = 0.9905 + 0.9·0.005 + 1.9·0.0055 = 1.00545.
    two_updates(
        OptimizerSpec::Momentum(Momentum {
            lr: 1e-2,
            momentum: 0.9,
            nesterov: true,
        }),
        [
            [0.9905, -1.981, 0.462, 0.0],
            [1.00545, -1.97765, 0.4268, 0.057],
        ],
    );
}

#[test]
fn rmsprop() {
    // c = 0.99c + 0.01g²; w −= 0.01·g/(√c + 1e-8). Element 0: c1 = 0.0025,
    // w1 = 1 − 0.005/0.05000001 = 0.90000002; c2 = 0.012475,
    // w2 = w1 + 0.01/(0.1116915…+1e-8) = 0.9895323…. A zero gradient on zero state moves
    // nothing (ε keeps 0/0 away).
    two_updates(
        OptimizerSpec::rmsprop(),
        [
            [
                0.900_000_019_999_996,
                -1.900_000_009_999_999,
                0.400_000_004_999_999_77,
                0.0,
            ],
            [
                0.989_532_308_191_133_7,
                -1.924_368_516_566_131_3,
                0.355_098_681_509_435,
                0.099_999_996_666_666_73,
            ],
        ],
    );
}

#[test]
fn adam_with_bias_correction() {
    // m = 0.9m + 0.1g, v = 0.999v + 0.001g², m̂ = m/(1 − 0.9ᵗ), v̂ = v/(1 − 0.999ᵗ),
    // w −= 1e-3·m̂/(√v̂ + 1e-8). Step 1: m̂ = g, v̂ = g², so w moves 1e-3·sign(g).
    // Step 2, element 3 (g = 0, then −3): m̂ = −0.3/0.19, v̂ = 0.009/0.001999,
    // w2 = 0 + 1e-3·1.578947…/2.121851… = 7.441368e-4.
    let m = two_updates(
        OptimizerSpec::adam(),
        [
            [
                0.999_000_000_02,
                -1.999_000_000_009_999_9,
                0.499_000_000_005,
                0.0,
            ],
            [
                0.999_366_103_542_405_6,
                -1.998_530_531_845_234_4,
                0.498_067_820_372_085_1,
                0.000_744_136_820_059_964_4,
            ],
        ],
    );
    let (slots, t) = m.optimizer().state();
    let (first, second) = (slots[0], slots[1]);
    assert_eq!(t, 2);
    // m2 = 0.09·g1 + 0.1·g2, v2 = 0.000999·g1² + 0.001·g2² (element 3: −0.3 and 0.009).
    assert!((first[1][1] - (-0.3)).abs() < 1e-15);
    assert!((second[1][1] - 0.009).abs() < 1e-15);
}

/// A two-layer model of either dtype with some optimizer state, after one good step.
fn trained<T: backprop::engine::Scalar>(
    optimizer: OptimizerSpec,
) -> (Model<T>, Array2<T>, Vec<usize>) {
    let mut s = ModelSpec::new(
        4,
        vec![HiddenSpec {
            units: 5,
            activation: ActivationSpec::Tanh,
        }],
        3,
    );
    s.optimizer = optimizer;
    s.loss = LossSpec::Softmax;
    s.l2 = 1e-3;
    let mut m = Model::<T>::new(s).unwrap();
    let mut rng = Rng::new(12);
    let x = gaussian2(&mut rng, 6, 4, 1.0).mapv(T::of);
    let y = labels(&mut rng, 6, 3);
    m.train_step(x.view(), &y).unwrap();
    (m, x, y)
}

/// The model's gradients for its own batch, named, as `ApplyGradients` would send them.
fn named_grads<T: backprop::engine::Scalar>(
    m: &Model<T>,
    x: &Array2<T>,
    y: &[usize],
) -> Vec<(String, ArrayD<T>)> {
    let g = m
        .net()
        .gradients(x.view(), backprop::model::Target::Labels(y), false)
        .unwrap();
    m.net()
        .params()
        .iter()
        .map(|p| p.name.clone())
        .zip(g.params)
        .collect()
}

fn param_bits64(m: &Model<f64>) -> Vec<Vec<u64>> {
    bits_f64(
        &m.net()
            .params()
            .iter()
            .map(|p| &p.value)
            .collect::<Vec<_>>(),
    )
}

fn param_bits32(m: &Model<f32>) -> Vec<Vec<u32>> {
    bits_f32(
        &m.net()
            .params()
            .iter()
            .map(|p| &p.value)
            .collect::<Vec<_>>(),
    )
}

#[test]
fn a_non_finite_gradient_changes_nothing() {
    for opt in all_optimizers() {
        for (bad, value) in [(3, f64::NAN), (0, f64::INFINITY), (2, f64::NEG_INFINITY)] {
            let (mut m, x, y) = trained::<f64>(opt);
            let before = m.clone();
            let bits = param_bits64(&m);
            let mut g = named_grads(&m, &x, &y);
            // Every other gradient is good, so a partial update would show.
            g[bad].1.as_slice_mut().unwrap()[1] = value;
            let name = g[bad].0.clone();
            match m.apply_gradients(g) {
                Err(EngineError::NonFiniteUpdate { field, what, index }) => {
                    assert_eq!(
                        (field.as_str(), what, index),
                        (name.as_str(), "gradient", 1)
                    );
                }
                other => panic!("{opt:?}: expected NonFiniteUpdate, got {other:?}"),
            }
            assert_eq!(
                m, before,
                "{opt:?}: params, optimizer state and step unchanged"
            );
            assert_eq!(param_bits64(&m), bits);
            assert_eq!(m.step(), 1);

            // The rejection leaves no trace: the next good update is the one an untouched
            // copy makes.
            let mut twin = before.clone();
            let g = named_grads(&m, &x, &y);
            m.apply_gradients(g.clone()).unwrap();
            twin.apply_gradients(g).unwrap();
            assert_eq!(m, twin);
        }
    }
}

#[test]
fn an_update_that_overflows_is_rejected() {
    // f32 SGD with lr 10: 10·3e38 overflows, so the updated value would be −∞.
    let (mut m, x, y) = trained::<f32>(OptimizerSpec::Sgd(Sgd { lr: 10.0 }));
    let before = m.clone();
    let bits = param_bits32(&m);
    let mut g = named_grads(&m, &x, &y);
    g[2].1[[0, 0]] = 3e38;
    match m.apply_gradients(g) {
        Err(EngineError::NonFiniteUpdate { field, what, index }) => {
            assert_eq!(
                (field.as_str(), what, index),
                ("layers.1.weight", "updated value", 0)
            );
        }
        other => panic!("expected NonFiniteUpdate, got {other:?}"),
    }
    assert_eq!(m, before);
    assert_eq!(param_bits32(&m), bits);
}

#[test]
fn an_update_whose_optimizer_state_overflows_is_rejected() {
    // In f32, g = 1e21 is finite but (1 − ρ)·g² is not: RMSProp's cache and Adam's v
    // would become +∞. The step itself stays finite (g/√∞ = 0), but the parameter would
    // be frozen for good, so the update is refused like any other non-finite one.
    for opt in [OptimizerSpec::rmsprop(), OptimizerSpec::adam()] {
        let (mut m, x, y) = trained::<f32>(opt);
        let before = m.clone();
        let mut g = named_grads(&m, &x, &y);
        g[0].1[[1, 2]] = 1e21;
        match m.apply_gradients(g) {
            Err(EngineError::NonFiniteUpdate { field, what, index }) => {
                assert_eq!(
                    (field.as_str(), what, index),
                    ("layers.0.weight", "optimizer state", 7)
                );
            }
            other => panic!("{opt:?}: expected NonFiniteUpdate, got {other:?}"),
        }
        assert_eq!(m, before, "{opt:?}");
    }
}

#[test]
fn bad_gradient_sets_are_typed_errors_and_change_nothing() {
    let (mut m, x, y) = trained::<f64>(OptimizerSpec::adam());
    let before = m.clone();
    let good = named_grads(&m, &x, &y);
    let field_of = |r: Result<u64, EngineError>| match r {
        Err(EngineError::Parameter { field, .. }) => field,
        Err(EngineError::Shape { field, .. }) => field,
        other => panic!("expected a parameter or shape error, got {other:?}"),
    };

    let mut unknown = good.clone();
    unknown[1].0 = "layers.9.bias".into();
    assert_eq!(
        field_of(m.apply_gradients(unknown)),
        "gradients[layers.9.bias]"
    );

    let mut repeated = good.clone();
    repeated.push(good[0].clone());
    assert_eq!(
        field_of(m.apply_gradients(repeated)),
        "gradients[layers.0.weight]"
    );

    let mut missing = good.clone();
    missing.remove(3);
    assert_eq!(field_of(m.apply_gradients(missing)), "gradients");

    let mut misshapen = good.clone();
    misshapen[2].1 = ArrayD::zeros(IxDyn(&[3, 5]));
    assert_eq!(
        field_of(m.apply_gradients(misshapen)),
        "gradients[layers.1.weight]"
    );

    assert_eq!(m, before);
    // Order does not matter: names do.
    let mut shuffled = good.clone();
    shuffled.reverse();
    let mut twin = before.clone();
    m.apply_gradients(shuffled).unwrap();
    twin.apply_gradients(good).unwrap();
    assert_eq!(m, twin);
}

#[test]
fn a_bad_batch_is_a_typed_error_and_changes_nothing() {
    let (mut m, x, y) = trained::<f32>(OptimizerSpec::momentum());
    let before = m.clone();
    let bits = param_bits32(&m);

    let mut nan = x.clone();
    nan[[2, 3]] = f32::NAN;
    match m.train_step(nan.view(), &y) {
        Err(EngineError::NonFinite { field, index, .. }) => {
            assert_eq!((field.as_str(), index), ("x", 2 * 4 + 3));
        }
        other => panic!("NaN in x: {other:?}"),
    }

    let mut out_of_range = y.clone();
    out_of_range[4] = 3;
    assert_eq!(
        m.train_step(x.view(), &out_of_range).unwrap_err(),
        EngineError::Label {
            field: "labels".into(),
            index: 4,
            label: 3,
            classes: 3
        }
    );

    assert_eq!(
        m.train_step(x.view(), &y[..5]).unwrap_err(),
        EngineError::LabelCount {
            field: "labels".into(),
            expected: 6,
            got: 5
        }
    );

    let wide = Array2::<f32>::zeros((6, 5));
    match m.train_step(wide.view(), &y) {
        Err(EngineError::Shape { field, .. }) => assert_eq!(field, "x"),
        other => panic!("wrong D: {other:?}"),
    }

    let empty = Array2::<f32>::zeros((0, 4));
    assert_eq!(
        m.train_step(empty.view(), &[]).unwrap_err(),
        EngineError::EmptyBatch { field: "x".into() }
    );

    assert_eq!(m, before);
    assert_eq!(param_bits32(&m), bits);
    assert_eq!(m.step(), 1);
    // And the model still trains.
    assert_eq!(m.train_step(x.view(), &y).unwrap().step, 2);
}

#[test]
fn train_step_is_forward_backward_and_one_update() {
    // The report carries the losses before the update; the update is exactly the one
    // apply_gradients makes with the same gradients.
    let (m0, x, y) = trained::<f64>(OptimizerSpec::adam());
    let mut a = m0.clone();
    let mut b = m0.clone();
    let (_, losses) = m0.net().evaluate(x.view(), &y).unwrap();
    let report = a.train_step(x.view(), &y).unwrap();
    assert_eq!(report.losses, losses);
    assert_eq!(report.step, 2);
    b.apply_gradients(named_grads(&m0, &x, &y)).unwrap();
    assert_eq!(a, b);
}

/// PyTorch's `torch.optim.AdamW` as its documentation writes the algorithm, in plain f64
/// on a flat parameter vector, knowing nothing of the engine: for t = 1, 2, …
/// `θ ← θ − γλθ; m ← β1·m + (1 − β1)g; v ← β2·v + (1 − β2)g²;`
/// `m̂ = m/(1 − β1ᵗ); v̂ = v/(1 − β2ᵗ); θ ← θ − γ·m̂/(√v̂ + ε)`, g the gradient at the θ
/// before the step. `bias_correction: false` drops the two divisions, to show the test
/// would notice.
fn adamw_reference(
    p: [f64; 4],
    grads: &[[f64; 4]],
    (lr, beta1, beta2, eps, wd): (f64, f64, f64, f64, f64),
    bias_correction: bool,
) -> Vec<[f64; 4]> {
    let (mut p, mut m, mut v) = (p, [0.0; 4], [0.0; 4]);
    let mut out = Vec::new();
    for (step, g) in grads.iter().enumerate() {
        let t = step as i32 + 1;
        let (c1, c2) = if bias_correction {
            (1.0 - beta1.powi(t), 1.0 - beta2.powi(t))
        } else {
            (1.0, 1.0)
        };
        for i in 0..4 {
            p[i] -= lr * wd * p[i];
            m[i] = beta1 * m[i] + (1.0 - beta1) * g[i];
            v[i] = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i];
            p[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
        }
        out.push(p);
    }
    out
}

const ADAMW: (f64, f64, f64, f64, f64) = (0.05, 0.9, 0.999, 1e-8, 0.3);
const ADAMW_GRADS: [[f64; 4]; 4] = [G1, G2, [0.3, 0.3, -0.5, 1.0], [2.0, -0.1, 0.0, 0.5]];

fn adamw_spec() -> OptimizerSpec {
    let (lr, beta1, beta2, eps, weight_decay) = ADAMW;
    OptimizerSpec::AdamW(AdamW {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
    })
}

#[test]
fn adamw_follows_its_published_rule() {
    // λ = 0.3, lr = 0.05: each step shrinks every parameter, the biases too, by 1.5%
    // before the Adam step, far above the 1e-12 tolerance.
    let mut m = tiny(adamw_spec());
    let start = [1.0, -2.0, 0.5, 0.0];
    let want = adamw_reference(start, &ADAMW_GRADS, ADAMW, true);
    let uncorrected = adamw_reference(start, &ADAMW_GRADS, ADAMW, false);
    let adam = adamw_reference(start, &ADAMW_GRADS, (ADAMW.0, 0.9, 0.999, 1e-8, 0.0), true);
    for (k, g) in ADAMW_GRADS.into_iter().enumerate() {
        m.apply_gradients(grads(g)).unwrap();
        let got = flat(&m);
        for i in 0..4 {
            assert!(
                (got[i] - want[k][i]).abs() < 1e-12,
                "step {}: element {i} is {}, want {}",
                k + 1,
                got[i],
                want[k][i]
            );
        }
        // The decay and the bias correction both move the values by far more than the
        // tolerance, so the comparison above checks each of them.
        let apart = |other: &[f64; 4]| {
            (0..4)
                .map(|i| (got[i] - other[i]).abs())
                .fold(0.0, f64::max)
        };
        assert!(
            apart(&uncorrected[k]) > 1e-4,
            "step {}: bias correction",
            k + 1
        );
        assert!(apart(&adam[k]) > 1e-4, "step {}: weight decay", k + 1);
    }
    // The bias (element 2) decays like the weights: with the weight decay off it would
    // sit elsewhere.
    assert!((want[3][2] - adam[3][2]).abs() > 1e-3);
    let (slots, t) = m.optimizer().state();
    assert_eq!(t, 4);
    assert_eq!(
        Optimizer::<f64>::slot_names(&adamw_spec()),
        ["adamw_m", "adamw_v"]
    );
    // m and v are Adam's: after G1 then G2, element 3 (g = 0, then −3) has
    // m = 0.1·(−3)·0.9² + … ; checked directly for step 2 on a fresh model below.
    assert_eq!(slots.len(), 2);
    let mut two = tiny(adamw_spec());
    two.apply_gradients(grads(G1)).unwrap();
    two.apply_gradients(grads(G2)).unwrap();
    let (slots, _) = two.optimizer().state();
    assert!((slots[0][1][1] - (-0.3)).abs() < 1e-15, "m");
    assert!((slots[1][1][1] - 0.009).abs() < 1e-15, "v");
}

#[test]
fn adamw_without_weight_decay_is_adam_bit_for_bit() {
    let (lr, beta1, beta2, eps, _) = ADAMW;
    let mut a = tiny(OptimizerSpec::AdamW(AdamW {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay: 0.0,
    }));
    let mut b = tiny(OptimizerSpec::Adam(Adam {
        lr,
        beta1,
        beta2,
        eps,
    }));
    for g in ADAMW_GRADS {
        a.apply_gradients(grads(g)).unwrap();
        b.apply_gradients(grads(g)).unwrap();
        let bits = |m: &Model<f64>| flat(m).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b));
    }
}

#[test]
fn adamw_defaults_are_pytorchs() {
    assert_eq!(
        AdamW::default(),
        AdamW {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    );
    assert_eq!(adamw_spec().kind_name(), "adamw");
}

/// Encode, decode and keep training: the restored AdamW model (parameters, m, v, t and
/// step) goes on exactly as the original, in both dtypes.
fn adamw_continues_after_a_checkpoint<T: backprop::engine::Scalar>(
    take: fn(&AnyModel) -> &Model<T>,
    take_mut: fn(&mut AnyModel) -> &mut Model<T>,
) {
    let mut s = ModelSpec::new(
        4,
        vec![HiddenSpec {
            units: 5,
            activation: ActivationSpec::Relu,
        }],
        3,
    );
    s.optimizer = adamw_spec();
    s.loss = LossSpec::Softmax;
    s.dtype = if T::NAME == "f64" {
        DType::F64
    } else {
        DType::F32
    };
    let mut rng = Rng::new(41);
    let batches: Vec<(Array2<T>, Vec<usize>)> = (0..6)
        .map(|_| {
            (
                gaussian2(&mut rng, 8, 4, 1.0).mapv(T::of),
                labels(&mut rng, 8, 3),
            )
        })
        .collect();
    let mut original = AnyModel::new(s.clone()).unwrap();
    for (x, y) in &batches[..3] {
        take_mut(&mut original).train_step(x.view(), y).unwrap();
    }
    let bytes = checkpoint::encode(&original, &[]).unwrap();
    let mut restored = checkpoint::decode(&bytes).unwrap().model;
    assert_eq!(take(&restored), take(&original));
    assert_eq!(take(&restored).optimizer().state().1, 3);
    // Bit-identical after more steps (PartialEq on f32/f64 values would let −0 = +0 pass).
    let bits = |m: &Model<T>| -> Vec<u64> {
        let (slots, _) = m.optimizer().state();
        m.net()
            .params()
            .iter()
            .map(|p| &p.value)
            .chain(slots.iter().flat_map(|s| s.iter()))
            .flat_map(|a| a.iter().map(|v| v.as_f64().to_bits()))
            .collect()
    };
    for (x, y) in &batches[3..] {
        take_mut(&mut original).train_step(x.view(), y).unwrap();
        take_mut(&mut restored).train_step(x.view(), y).unwrap();
        assert_eq!(bits(take(&restored)), bits(take(&original)));
    }
    assert_eq!(take(&restored).step(), 6);
    let fresh = Model::<T>::new(s).unwrap();
    assert_ne!(
        bits(&fresh),
        bits(take(&restored)),
        "training moved the state"
    );
}

#[test]
fn an_adamw_model_continues_bit_identically_after_a_checkpoint() {
    adamw_continues_after_a_checkpoint::<f32>(
        |m| match m {
            AnyModel::F32(m) => m,
            AnyModel::F64(_) => panic!("f32 expected"),
        },
        |m| match m {
            AnyModel::F32(m) => m,
            AnyModel::F64(_) => panic!("f32 expected"),
        },
    );
    adamw_continues_after_a_checkpoint::<f64>(
        |m| match m {
            AnyModel::F64(m) => m,
            AnyModel::F32(_) => panic!("f64 expected"),
        },
        |m| match m {
            AnyModel::F64(m) => m,
            AnyModel::F32(_) => panic!("f64 expected"),
        },
    );
}

#[test]
fn a_negative_adamw_v_is_refused_on_restore() {
    let m = tiny(adamw_spec());
    let values: Vec<ArrayD<f64>> = m.net().params().iter().map(|p| p.value.clone()).collect();
    let zeros: Vec<ArrayD<f64>> = values.iter().map(|v| ArrayD::zeros(v.raw_dim())).collect();
    let mut v = zeros.clone();
    v[1][[1]] = -1e-9;
    let spec = m.net().spec().clone();
    match Model::from_state(spec.clone(), values.clone(), vec![zeros.clone(), v], 1, 1) {
        Err(EngineError::Parameter { field, .. }) => assert_eq!(field, "layers.0.bias.adamw_v"),
        other => panic!("expected the negative v refused, got {other:?}"),
    }
    // m may be negative: it is a mean, not a mean of squares.
    let mut neg_m = zeros.clone();
    neg_m[0][[0, 1]] = -0.5;
    Model::from_state(spec, values, vec![neg_m, zeros], 1, 1).unwrap();
}

#[test]
fn every_rule_is_known_by_the_name_checkpoints_and_the_cli_use() {
    // The names are a contract: the CLI's `--optimizer` choices, the proto enum's
    // suffixes, and the error that names a rule whose restored state is wrong.
    let names: Vec<&str> = OptimizerSpec::all().iter().map(|o| o.kind_name()).collect();
    assert_eq!(names, ["sgd", "momentum", "rmsprop", "adam", "adamw"]);
    let m = tiny(OptimizerSpec::adam());
    let values: Vec<ArrayD<f64>> = m.net().params().iter().map(|p| p.value.clone()).collect();
    match Model::from_state(m.net().spec().clone(), values, vec![], 1, 1) {
        Err(EngineError::Parameter { field, reason }) => {
            assert_eq!(field, "optimizer");
            assert_eq!(reason, "adam needs 2 state slot(s) per parameter, got 0");
        }
        other => panic!("expected the missing slots refused, got {other:?}"),
    }
}

#[test]
fn every_rules_learning_rate_reads_back_and_can_be_replaced() {
    // The defaults: CS231n's 1e-2 for SGD, momentum and RMSProp, 1e-3 for Adam and
    // AdamW (PyTorch's). A schedule replaces only the learning rate.
    let lrs: Vec<f64> = OptimizerSpec::all()
        .iter()
        .map(|o| o.learning_rate())
        .collect();
    assert_eq!(lrs, [1e-2, 1e-2, 1e-2, 1e-3, 1e-3]);
    for o in OptimizerSpec::all() {
        let scheduled = o.at_learning_rate(0.25);
        assert_eq!(scheduled.learning_rate(), 0.25, "{o:?}");
        assert_ne!(scheduled, o);
        assert_eq!(scheduled.at_learning_rate(o.learning_rate()), o);
    }
}
