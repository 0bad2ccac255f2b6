//! Every gate and activation against central differences in f64 (issue 2: relative error
//! < 1e-7 away from kinks), plus the routing rules a numeric check cannot see: max sends
//! ties to its first input, and fan-out adds the gradients of both paths.

use backprop::engine::gradcheck::{self, Elements};
use backprop::engine::ops::{
    elu::Elu,
    gelu::{Gelu, GeluForm},
    leaky_relu::LeakyRelu,
    relu::Relu,
    sigmoid::Sigmoid,
    tanh::Tanh,
};
use backprop::engine::rng::Rng;
use backprop::engine::trace::{Landmarks, LocalRule, Trace};
use backprop::engine::{Activation, BackwardOptions, EngineError, GradStore, Graph, NodeId};
use ndarray::{ArrayD, IxDyn, arr0, arr1, arr2};
use support::engine::{coefficients, gate_check, gaussian, labels, min_distance, push_from_kinks};

/// Away from kinks, rounding is the only error left: h = 1e-5 gives ~1e-10.
const SMOOTH: f64 = 1e-7;
/// How far inputs are pushed from a kink (a central difference reaches only h = 1e-5).
const GAP: f64 = 1e-3;

fn assert_below(errors: &[f64], bound: f64, what: &str) {
    for (i, &e) in errors.iter().enumerate() {
        assert!(
            e < bound,
            "{what}: input {i} has relative error {e:e} ≥ {bound:e}"
        );
    }
}

fn one() -> ArrayD<f64> {
    arr0(1.0).into_dyn()
}

#[test]
fn harness_detects_a_wrong_gradient() {
    // The oracle must be able to fail: a gradient off by 1% gives an error near 5e-3.
    let mut rng = Rng::new(1);
    let x = gaussian(&mut rng, &[3, 4], 1.0);
    let c = gate_check(std::slice::from_ref(&x), 2, |g, i| g.activation(i[0], Tanh));
    assert_below(&c.errors, SMOOTH, "tanh");
    let wrong = vec![&c.analytic[0] * 1.01];
    let r = coefficients(&mut Rng::new(2), &[3, 4]);
    let mut state = vec![x];
    let checks = gradcheck::check(
        &mut state,
        &wrong,
        Elements::All,
        |s, k| &mut s[k],
        |s| Ok((s[0].mapv(f64::tanh) * &r).sum()),
    )
    .unwrap();
    let e = checks[0].max_relative_error;
    assert!((4e-3..6e-3).contains(&e), "a 1% error reads as {e}");
}

#[test]
fn matmul() {
    let mut rng = Rng::new(10);
    let x = gaussian(&mut rng, &[4, 5], 1.0);
    let w = gaussian(&mut rng, &[5, 3], 1.0);
    let c = gate_check(&[x.clone(), w.clone()], 11, |g, i| g.matmul(i[0], i[1]));
    assert_below(&c.errors, SMOOTH, "matmul");
    // dX = G·Wᵀ and dW = Xᵀ·G, with G = R.
    let r = coefficients(&mut Rng::new(11), &[4, 3]);
    let (x2, w2, r2) = (as2(&x), as2(&w), as2(&r));
    assert_close(&c.analytic[0], &r2.dot(&w2.t()).into_dyn(), 1e-14);
    assert_close(&c.analytic[1], &x2.t().dot(&r2).into_dyn(), 1e-14);
}

#[test]
fn standardize() {
    let mut rng = Rng::new(24);
    let x = gaussian(&mut rng, &[4, 3], 3.0);
    let (mean, inv_std) = ([0.5, -2.0, 10.0], [2.0, 0.25, 1.0 / 3.0]);
    let c = gate_check(std::slice::from_ref(&x), 25, |g, i| {
        g.standardize(i[0], mean.to_vec(), inv_std.to_vec())
    });
    assert_below(&c.errors, SMOOTH, "standardize");
    // dX = G ⊙ s per column; the forward value is (x − μ)·s.
    let r = coefficients(&mut Rng::new(25), &[4, 3]);
    let want = ndarray::Array2::from_shape_fn((4, 3), |(i, j)| r[[i, j]] * inv_std[j]);
    assert_close(&c.analytic[0], &want.into_dyn(), 0.0);
    let mut g = Graph::<f64>::new();
    let leaf = g.leaf("x", x.clone(), false);
    let y = g
        .standardize(leaf, mean.to_vec(), inv_std.to_vec())
        .unwrap();
    let got = g.value(y).to_owned();
    for i in 0..4 {
        for j in 0..3 {
            assert_eq!(got[[i, j]], (x[[i, j]] - mean[j]) * inv_std[j]);
        }
    }
    // Means and scales of another width than X's are refused, naming the gate.
    let e = g
        .standardize(leaf, mean[..2].to_vec(), inv_std.to_vec())
        .unwrap_err();
    assert!(e.to_string().contains("standardize"), "{e}");
}

#[test]
fn bias_add() {
    let mut rng = Rng::new(20);
    let a = gaussian(&mut rng, &[4, 3], 1.0);
    let b = gaussian(&mut rng, &[3], 1.0);
    let c = gate_check(&[a, b], 21, |g, i| g.bias_add(i[0], i[1]));
    assert_below(&c.errors, SMOOTH, "bias_add");
    // The bias fans out over the N rows, so db is the column sum of G.
    let r = coefficients(&mut Rng::new(21), &[4, 3]);
    assert_close(&c.analytic[0], &r, 0.0);
    assert_close(&c.analytic[1], &r.sum_axis(ndarray::Axis(0)), 1e-15);
}

#[test]
fn add() {
    let mut rng = Rng::new(30);
    let a = gaussian(&mut rng, &[3, 4], 1.0);
    let b = gaussian(&mut rng, &[3, 4], 1.0);
    let c = gate_check(&[a, b], 31, |g, i| g.add(i[0], i[1]));
    assert_below(&c.errors, SMOOTH, "add");
    // add distributes: both inputs receive G unchanged.
    let r = coefficients(&mut Rng::new(31), &[3, 4]);
    assert_close(&c.analytic[0], &r, 0.0);
    assert_close(&c.analytic[1], &r, 0.0);
}

#[test]
fn mul() {
    let mut rng = Rng::new(40);
    let a = gaussian(&mut rng, &[3, 4], 1.0);
    let b = gaussian(&mut rng, &[3, 4], 1.0);
    let c = gate_check(&[a.clone(), b.clone()], 41, |g, i| g.mul(i[0], i[1]));
    assert_below(&c.errors, SMOOTH, "mul");
    // mul switches its inputs: da = G ⊙ b, db = G ⊙ a.
    let r = coefficients(&mut Rng::new(41), &[3, 4]);
    assert_close(&c.analytic[0], &(&r * &b), 0.0);
    assert_close(&c.analytic[1], &(&r * &a), 0.0);
}

#[test]
fn max_away_from_ties() {
    let mut rng = Rng::new(50);
    let a = gaussian(&mut rng, &[4, 5], 1.0);
    let mut b = gaussian(&mut rng, &[4, 5], 1.0);
    // The kink of max(a, b) is a = b: keep |a − b| ≥ GAP.
    let mut diff = &b - &a;
    push_from_kinks(&mut diff, &[0.0], GAP);
    b = &a + &diff;
    assert!(min_distance(&(&b - &a), &[0.0]) >= GAP * 0.999);
    let c = gate_check(&[a.clone(), b.clone()], 51, |g, i| g.max(i[0], i[1]));
    assert_below(&c.errors, SMOOTH, "max");
    // Routing: exactly one input receives each element's gradient.
    let r = coefficients(&mut Rng::new(51), &[4, 5]);
    for (k, ((&x, &y), &g)) in a.iter().zip(&b).zip(&r).enumerate() {
        let (da, db) = (
            c.analytic[0].as_slice().unwrap()[k],
            c.analytic[1].as_slice().unwrap()[k],
        );
        if x > y {
            assert_eq!((da, db), (g, 0.0));
        } else {
            assert_eq!((da, db), (0.0, g));
        }
    }
}

#[test]
fn max_routes_ties_to_the_first_input() {
    let mut g = Graph::<f64>::new();
    let a = g.leaf("a", arr1(&[1.0, 2.0, -3.0, 0.0]).into_dyn(), true);
    let b = g.leaf("b", arr1(&[1.0, 5.0, -3.0, -0.0]).into_dyn(), true);
    let m = g.max(a, b).unwrap();
    assert_eq!(g.value(m), arr1(&[1.0, 5.0, -3.0, 0.0]).into_dyn());
    let up = arr1(&[10.0, 20.0, 30.0, 40.0]).into_dyn();
    let grads = g
        .backward(vec![(m, up)], BackwardOptions::default())
        .unwrap();
    // Elements 0, 2, 3 are ties (0.0 = −0.0 too): all of G goes to a, none to b.
    assert_eq!(
        grads.get(a).unwrap(),
        &arr1(&[10.0, 0.0, 30.0, 40.0]).into_dyn()
    );
    assert_eq!(
        grads.get(b).unwrap(),
        &arr1(&[0.0, 20.0, 0.0, 0.0]).into_dyn()
    );
}

#[test]
fn sum() {
    let mut rng = Rng::new(60);
    let a = gaussian(&mut rng, &[3, 4], 1.0);
    let c = gate_check(std::slice::from_ref(&a), 61, |g, i| g.sum(i[0]));
    assert_below(&c.errors, SMOOTH, "sum");
    let r = coefficients(&mut Rng::new(61), &[]).sum();
    assert_close(&c.analytic[0], &ArrayD::from_elem(IxDyn(&[3, 4]), r), 0.0);
}

#[test]
fn l2() {
    let mut rng = Rng::new(70);
    let w = gaussian(&mut rng, &[4, 3], 1.0);
    let lambda = 0.3;
    let c = gate_check(std::slice::from_ref(&w), 71, |g, i| g.l2(i[0], lambda));
    assert_below(&c.errors, SMOOTH, "l2");
    // R = λ·ΣW² (no ½), so dW = 2λW.
    let r = coefficients(&mut Rng::new(71), &[]).sum();
    assert_close(&c.analytic[0], &w.mapv(|v| 2.0 * lambda * v * r), 1e-15);
    let mut g = Graph::<f64>::new();
    let id = g.leaf("w", w.clone(), false);
    let out = g.l2(id, lambda).unwrap();
    let expect = lambda * w.iter().map(|v| v * v).sum::<f64>();
    assert!((g.value(out).sum() - expect).abs() < 1e-14);
}

/// Keeps every SVM margin `s_j − s_y + Δ` (j ≠ y) at least GAP from 0.
fn push_svm_margins(scores: &mut ArrayD<f64>, labels: &[usize], delta: f64) {
    let c = scores.shape()[1];
    for (i, &y) in labels.iter().enumerate() {
        for j in (0..c).filter(|&j| j != y) {
            let m = scores[[i, j]] - scores[[i, y]] + delta;
            if m.abs() < GAP {
                let target = if m >= 0.0 { GAP } else { -GAP };
                scores[[i, j]] = scores[[i, y]] - delta + target;
            }
        }
    }
}

#[test]
fn svm_loss() {
    for (seed, delta) in [(80, 1.0), (81, 0.5), (82, 2.0)] {
        let mut rng = Rng::new(seed);
        let mut s = gaussian(&mut rng, &[6, 4], 1.0);
        let y = labels(&mut rng, 6, 4);
        push_svm_margins(&mut s, &y, delta);
        let c = gate_check(std::slice::from_ref(&s), seed + 100, |g, i| {
            g.svm_loss(i[0], &y, delta)
        });
        assert_below(&c.errors, SMOOTH, &format!("svm_loss Δ={delta}"));
        // Some margins are active and some are not, so both branches are exercised.
        let active = (0..6)
            .flat_map(|i| (0..4).map(move |j| (i, j)))
            .filter(|&(i, j)| j != y[i] && c.analytic[0][[i, j]] != 0.0)
            .count();
        assert!(active > 0 && active < 6 * 3, "active margins: {active}");
    }
}

#[test]
fn softmax_loss() {
    // Scores of std ≤ 2 keep every probability above ~1e-4: a gradient element far
    // smaller than that is swamped by rounding in the numeric difference of L, which
    // says nothing about the gate (shift invariance covers large scores below).
    for (seed, scale) in [(90, 1.0), (91, 2.0)] {
        let mut rng = Rng::new(seed);
        let s = gaussian(&mut rng, &[6, 4], scale);
        let y = labels(&mut rng, 6, 4);
        let c = gate_check(std::slice::from_ref(&s), seed + 100, |g, i| {
            g.softmax_loss(i[0], &y)
        });
        assert_below(&c.errors, SMOOTH, &format!("softmax_loss scale {scale}"));
        // (p − onehot(y))/N: each row of the gradient sums to 0.
        for row in c.analytic[0].rows() {
            assert!(row.sum().abs() < 1e-15);
        }
    }
}

#[test]
fn softmax_loss_is_shift_invariant_and_does_not_overflow() {
    let y = [2usize, 0];
    let base = arr2(&[[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]]);
    let loss = |s: ndarray::Array2<f64>| {
        let mut g = Graph::<f64>::new();
        let id = g.leaf("s", s.into_dyn(), false);
        let l = g.softmax_loss(id, &y).unwrap();
        g.value(l).sum()
    };
    let l0 = loss(base.clone());
    let l1 = loss(&base + 1000.0);
    assert!(l1.is_finite() && (l0 - l1).abs() < 1e-12, "{l0} vs {l1}");
}

/// Activation inputs: Gaussian with std 2, pushed GAP from the kink at 0.
fn activation_input(seed: u64) -> ArrayD<f64> {
    let mut x = gaussian(&mut Rng::new(seed), &[4, 5], 2.0);
    push_from_kinks(&mut x, &[0.0], GAP);
    assert!(x.iter().any(|&v| v < 0.0) && x.iter().any(|&v| v > 0.0));
    x
}

fn check_activation<A: Activation + Copy>(act: A, seed: u64) {
    let x = activation_input(seed);
    let c = gate_check(std::slice::from_ref(&x), seed + 1, |g, i| {
        g.activation(i[0], act)
    });
    assert_below(&c.errors, SMOOTH, A::KIND);
}

#[test]
fn sigmoid() {
    check_activation(Sigmoid, 100);
}

#[test]
fn tanh() {
    check_activation(Tanh, 110);
}

#[test]
fn relu() {
    check_activation(Relu, 120);
}

#[test]
fn leaky_relu() {
    check_activation(LeakyRelu { slope: 0.1 }, 130);
    check_activation(LeakyRelu { slope: 0.3 }, 131);
    check_activation(LeakyRelu { slope: 0.0 }, 132);
}

#[test]
fn elu() {
    check_activation(Elu { alpha: 1.0 }, 140);
    check_activation(Elu { alpha: 0.5 }, 141);
    check_activation(Elu { alpha: 2.5 }, 142);
}

#[test]
fn gelu() {
    for (form, seed) in [(GeluForm::Erf, 160), (GeluForm::Tanh, 170)] {
        check_activation(Gelu { form }, seed);
        check_activation(Gelu { form }, seed + 2);
    }
}

#[test]
fn elu_at_its_kink() {
    // With α = 1, ELU is C¹ at 0 but not C²: a central difference across 0 is off by
    // O(h), which is where the looser bound applies. With α ≠ 1 the slope jumps, so the
    // kink must be avoided.
    let x = ArrayD::from_shape_vec(IxDyn(&[5]), vec![0.0, 2e-6, -3e-6, 1e-5, -8e-6]).unwrap();
    let c = gate_check(std::slice::from_ref(&x), 150, |g, i| {
        g.activation(i[0], Elu { alpha: 1.0 })
    });
    assert_below(&c.errors, 1e-4, "elu at 0");
}

#[test]
fn activation_values() {
    let x = arr1(&[-2.0, -0.5, 0.0, 0.5, 2.0]).into_dyn();
    let f = |build: &dyn Fn(&mut Graph<'static, f64>, NodeId) -> NodeId| {
        let mut g = Graph::<f64>::new();
        let id = g.leaf("x", x.clone(), false);
        let y = build(&mut g, id);
        g.value(y).to_owned()
    };
    let e = std::f64::consts::E;
    let cases: [(&str, ArrayD<f64>, [f64; 5]); 8] = [
        (
            "sigmoid",
            f(&|g, x| g.activation(x, Sigmoid).unwrap()),
            [
                1.0 / (1.0 + e * e),
                1.0 / (1.0 + e.sqrt()),
                0.5,
                1.0 / (1.0 + 1.0 / e.sqrt()),
                1.0 / (1.0 + 1.0 / (e * e)),
            ],
        ),
        (
            "tanh",
            f(&|g, x| g.activation(x, Tanh).unwrap()),
            [
                -0.964_027_580_075_816_9,
                -0.462_117_157_260_009_74,
                0.0,
                0.462_117_157_260_009_74,
                0.964_027_580_075_816_9,
            ],
        ),
        (
            "relu",
            f(&|g, x| g.activation(x, Relu).unwrap()),
            [0.0, 0.0, 0.0, 0.5, 2.0],
        ),
        (
            "leaky_relu 0.1",
            f(&|g, x| g.activation(x, LeakyRelu { slope: 0.1 }).unwrap()),
            [-0.2, -0.05, 0.0, 0.5, 2.0],
        ),
        (
            "elu 1.0",
            f(&|g, x| g.activation(x, Elu { alpha: 1.0 }).unwrap()),
            [1.0 / (e * e) - 1.0, 1.0 / e.sqrt() - 1.0, 0.0, 0.5, 2.0],
        ),
        (
            "elu 2.0",
            f(&|g, x| g.activation(x, Elu { alpha: 2.0 }).unwrap()),
            [
                2.0 * (1.0 / (e * e) - 1.0),
                2.0 * (1.0 / e.sqrt() - 1.0),
                0.0,
                0.5,
                2.0,
            ],
        ),
        (
            // x·Φ(x) with Φ(0.5) = 0.691462461274013, Φ(2) = 0.977249868051821; the
            // same as PyTorch's gelu(x) (approximate='none').
            "gelu erf",
            f(&|g, x| {
                g.activation(
                    x,
                    Gelu {
                        form: GeluForm::Erf,
                    },
                )
                .unwrap()
            }),
            [
                -2.0 * (1.0 - 0.977_249_868_051_820_8),
                -0.5 * (1.0 - 0.691_462_461_274_013_1),
                0.0,
                0.5 * 0.691_462_461_274_013_1,
                2.0 * 0.977_249_868_051_820_8,
            ],
        ),
        (
            // ½x(1 + tanh(√(2/π)(x + 0.044715x³))), as PyTorch's approximate='tanh'.
            "gelu tanh",
            f(&|g, x| {
                g.activation(
                    x,
                    Gelu {
                        form: GeluForm::Tanh,
                    },
                )
                .unwrap()
            }),
            [
                -0.045_402_305_912_224_94,
                -0.154_285_990_174_856_06,
                0.0,
                0.345_714_009_825_143_94,
                1.954_597_694_087_775,
            ],
        ),
    ];
    for (name, got, want) in cases {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{name}: {g} vs {w}");
        }
    }
}

/// Maxout `max_p(X·W_p + b_p)` from matmul, bias add and max gates, as the net builds it.
fn maxout(
    g: &mut Graph<'static, f64>,
    i: &[NodeId],
    pieces: usize,
) -> backprop::engine::Result<NodeId> {
    let x = i[0];
    let mut m = None;
    for p in 0..pieces {
        let z = g.matmul(x, i[1 + 2 * p])?;
        let z = g.bias_add(z, i[2 + 2 * p])?;
        m = Some(match m {
            None => z,
            Some(m) => g.max(m, z)?,
        });
    }
    Ok(m.expect("pieces ≥ 1"))
}

/// Maxout inputs whose pieces never come within GAP of a tie: the first seed from
/// `seed` on that gives them (deterministic).
fn maxout_inputs(seed: u64, pieces: usize) -> Vec<ArrayD<f64>> {
    for s in seed.. {
        let mut rng = Rng::new(s);
        let mut v = vec![gaussian(&mut rng, &[4, 5], 1.0)];
        for _ in 0..pieces {
            v.push(gaussian(&mut rng, &[5, 3], 1.0));
            v.push(gaussian(&mut rng, &[3], 1.0));
        }
        let z: Vec<ArrayD<f64>> = (0..pieces)
            .map(|p| (as2(&v[0]).dot(&as2(&v[1 + 2 * p])) + &v[2 + 2 * p]).into_dyn())
            .collect();
        let mut gap = f64::INFINITY;
        for p in 0..pieces {
            for q in p + 1..pieces {
                gap = gap.min(min_distance(&(&z[p] - &z[q]), &[0.0]));
            }
        }
        if gap > GAP {
            return v;
        }
    }
    unreachable!()
}

#[test]
fn maxout_from_max_gates() {
    for (seed, pieces) in [(160, 2), (170, 3)] {
        let inputs = maxout_inputs(seed, pieces);
        let c = gate_check(&inputs, seed + 1, |g, i| maxout(g, i, pieces));
        assert_below(&c.errors, SMOOTH, &format!("maxout k={pieces}"));
        // Every output element's gradient went to exactly one piece's bias.
        let total: f64 = (0..pieces).map(|p| c.analytic[2 + 2 * p].sum()).sum();
        let r = coefficients(&mut Rng::new(seed + 1), &[4, 3]);
        assert!((total - r.sum()).abs() < 1e-12);
        for p in 0..pieces {
            assert!(
                c.analytic[1 + 2 * p].iter().any(|&v| v != 0.0),
                "piece {p} won nothing"
            );
        }
    }
}

#[test]
fn fan_out_accumulates() {
    let x = arr1(&[1.5, -2.0, 0.25]).into_dyn();
    let up = arr1(&[1.0, 10.0, 100.0]).into_dyn();

    // x + x: both paths carry G, so dx = 2G.
    let mut g = Graph::<f64>::new();
    let a = g.leaf("x", x.clone(), true);
    let y = g.add(a, a).unwrap();
    let grads = g
        .backward(vec![(y, up.clone())], Default::default())
        .unwrap();
    assert_eq!(grads.get(a).unwrap(), &arr1(&[2.0, 20.0, 200.0]).into_dyn());

    // x ⊙ x: each path gives G ⊙ x, so dx = 2x ⊙ G.
    let mut g = Graph::<f64>::new();
    let a = g.leaf("x", x.clone(), true);
    let y = g.mul(a, a).unwrap();
    let grads = g
        .backward(vec![(y, up.clone())], Default::default())
        .unwrap();
    assert_eq!(grads.get(a).unwrap(), &arr1(&[3.0, -40.0, 50.0]).into_dyn());

    // Three uses through different gates: y = x ⊙ σ(x) + x; dy/dx = σ + xσ(1−σ) + 1.
    let mut g = Graph::<f64>::new();
    let a = g.leaf("x", x.clone(), true);
    let s = g.activation(a, Sigmoid).unwrap();
    let p = g.mul(a, s).unwrap();
    let y = g.add(p, a).unwrap();
    let grads = g
        .backward(vec![(y, up.clone())], Default::default())
        .unwrap();
    for ((&d, &v), &u) in grads.get(a).unwrap().iter().zip(&x).zip(&up) {
        let sig = 1.0 / (1.0 + (-v).exp());
        let want = u * (sig + v * sig * (1.0 - sig) + 1.0);
        assert!(
            (d - want).abs() < 1e-13 * want.abs().max(1.0),
            "{d} vs {want}"
        );
    }
}

#[test]
fn fan_out_of_a_shared_weight_checks_numerically() {
    // One W used by two matmuls (weights shared across two inputs), then added.
    let mut rng = Rng::new(180);
    let x1 = gaussian(&mut rng, &[3, 4], 1.0);
    let x2 = gaussian(&mut rng, &[3, 4], 1.0);
    let w = gaussian(&mut rng, &[4, 2], 1.0);
    let c = gate_check(&[x1, x2, w], 181, |g, i| {
        let a = g.matmul(i[0], i[2])?;
        let b = g.matmul(i[1], i[2])?;
        let a = g.activation(a, Tanh)?;
        g.add(a, b)
    });
    assert_below(&c.errors, SMOOTH, "shared weight");
}

#[test]
fn several_seeds_add_up() {
    let mut g = Graph::<f64>::new();
    let a = g.leaf("a", arr1(&[1.0, 2.0]).into_dyn(), true);
    let b = g.leaf("b", arr1(&[3.0, -1.0]).into_dyn(), true);
    let m = g.mul(a, b).unwrap();
    let s = g.sum(m).unwrap();
    // Seeds on m (G = [1, 1]) and on s (1): dm = [2, 2], so da = 2b, db = 2a.
    let grads = g
        .backward(
            vec![(m, arr1(&[1.0, 1.0]).into_dyn()), (s, one())],
            Default::default(),
        )
        .unwrap();
    assert_eq!(grads.get(a).unwrap(), &arr1(&[6.0, -2.0]).into_dyn());
    assert_eq!(grads.get(b).unwrap(), &arr1(&[2.0, 4.0]).into_dyn());
}

#[test]
fn retain_all_keeps_intermediate_gradients() {
    let mut g = Graph::<f64>::new();
    let a = g.leaf("a", arr1(&[1.0, -2.0]).into_dyn(), true);
    let t = g.activation(a, Relu).unwrap();
    let s = g.sum(t).unwrap();
    let keep = g
        .backward(vec![(s, one())], BackwardOptions { retain_all: true })
        .unwrap();
    assert_eq!(keep.get(t).unwrap(), &arr1(&[1.0, 1.0]).into_dyn());
    assert_eq!(keep.get(a).unwrap(), &arr1(&[1.0, 0.0]).into_dyn());
    let lean = g.backward(vec![(s, one())], Default::default()).unwrap();
    assert!(lean.get(t).is_none());
    assert_eq!(lean.get(a).unwrap(), keep.get(a).unwrap());
}

#[test]
fn leaves_that_need_no_gradient_get_none() {
    let mut g = Graph::<f64>::new();
    let x = g.leaf("x", arr2(&[[1.0, 2.0]]).into_dyn(), false);
    let w = g.leaf("w", arr2(&[[1.0], [3.0]]).into_dyn(), true);
    let s = g.matmul(x, w).unwrap();
    let l = g.sum(s).unwrap();
    let grads = g.backward(vec![(l, one())], Default::default()).unwrap();
    assert!(grads.get(x).is_none());
    assert_eq!(grads.get(w).unwrap(), &arr2(&[[1.0], [2.0]]).into_dyn());
}

#[test]
fn shape_and_label_errors_are_typed() {
    let mut g = Graph::<f64>::new();
    let x = g.leaf("x", ArrayD::zeros(IxDyn(&[2, 3])), true);
    let w = g.leaf("w", ArrayD::zeros(IxDyn(&[4, 2])), true);
    let b = g.leaf("b", ArrayD::zeros(IxDyn(&[4])), true);
    let v = g.leaf("v", ArrayD::zeros(IxDyn(&[3])), true);
    let field = |e: EngineError| match e {
        EngineError::Shape { field, .. } => field,
        other => panic!("expected a shape error, got {other:?}"),
    };
    assert_eq!(field(g.matmul(x, w).unwrap_err()), "matmul.w");
    assert_eq!(field(g.matmul(v, w).unwrap_err()), "matmul.x");
    assert_eq!(field(g.bias_add(x, b).unwrap_err()), "bias_add.b");
    assert_eq!(field(g.add(x, w).unwrap_err()), "add");
    assert_eq!(field(g.mul(x, v).unwrap_err()), "mul");
    assert_eq!(field(g.max(v, x).unwrap_err()), "max");
    assert_eq!(field(g.svm_loss(v, &[0], 1.0).unwrap_err()), "scores");
    assert_eq!(
        g.svm_loss(x, &[0, 3], 1.0).unwrap_err(),
        EngineError::Label {
            field: "labels".into(),
            index: 1,
            label: 3,
            classes: 3
        }
    );
    assert_eq!(
        g.softmax_loss(x, &[0]).unwrap_err(),
        EngineError::LabelCount {
            field: "labels".into(),
            expected: 2,
            got: 1
        }
    );
    let s = g.sum(x).unwrap();
    let err = g
        .backward(vec![(s, ArrayD::zeros(IxDyn(&[2])))], Default::default())
        .err()
        .unwrap();
    assert_eq!(field(err), "upstream");
}

#[test]
fn graph_and_gradients_are_send() {
    fn send<T: Send>() {}
    send::<Graph<'static, f32>>();
    send::<Graph<'static, f64>>();
    send::<GradStore<f32>>();
    send::<backprop::model::Model<f32>>();
    send::<backprop::model::AnyModel>();
}

fn as2(a: &ArrayD<f64>) -> ndarray::ArrayView2<'_, f64> {
    a.view().into_dimensionality().unwrap()
}

fn assert_close(got: &ArrayD<f64>, want: &ArrayD<f64>, tol: f64) {
    assert_eq!(got.shape(), want.shape());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "{g} vs {w} (tolerance {tol:e})");
    }
}

#[test]
fn l2_of_a_strided_weight_is_the_same_sum_of_squares() {
    // A transposed view has no contiguous slice, so `sum_of_squares` takes its plain
    // path. R = λ·ΣW² = 0.5·(1 + 4 + 9 + 0.25 + 0 + 1) = 7.625 either way, and dW = 2λW.
    let w = arr2(&[[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]]).into_dyn();
    let wt = w.t();
    assert!(wt.as_slice().is_none(), "the view must be strided");
    let mut g = Graph::<f64>::new();
    let id = g.leaf_view("w", wt.view(), true);
    let out = g.l2(id, 0.5).unwrap();
    assert_eq!(g.value(out).sum(), 7.625);
    let grads = g
        .backward(
            vec![(out, arr0(2.0).into_dyn())],
            BackwardOptions::default(),
        )
        .unwrap();
    // With upstream 2: 2·2λ·Wᵀ = 2Wᵀ.
    assert_eq!(grads.get(id).unwrap(), &wt.mapv(|v| 2.0 * v));
}

#[test]
fn every_gate_reports_the_kind_the_trace_names_it_by() {
    // The trace (and the Trace RPC) names each node by its gate's kind; clients match on
    // these strings.
    let mut g = Graph::<f64>::new();
    let x = g.leaf("x", arr2(&[[1.0, -2.0]]).into_dyn(), true);
    let w = g.leaf("w", arr2(&[[0.5, 1.0], [2.0, -1.0]]).into_dyn(), true);
    let b = g.leaf("b", arr1(&[0.1, 0.2]).into_dyn(), true);
    let s = g.matmul(x, w).unwrap();
    let s = g.bias_add(s, b).unwrap();
    g.add(s, s).unwrap();
    g.mul(s, s).unwrap();
    g.max(s, s).unwrap();
    g.sum(s).unwrap();
    g.l2(w, 0.1).unwrap();
    g.svm_loss(s, &[0], 1.0).unwrap();
    g.softmax_loss(s, &[1]).unwrap();
    g.activation(s, Relu).unwrap();
    g.activation(s, Sigmoid).unwrap();
    g.activation(s, Tanh).unwrap();
    g.activation(s, LeakyRelu { slope: 0.01 }).unwrap();
    g.activation(s, Elu { alpha: 1.0 }).unwrap();
    g.activation(s, Gelu::default()).unwrap();
    g.standardize(x, vec![1.0, -1.0], vec![0.5, 2.0]).unwrap();
    let kinds: Vec<&str> = g.nodes().iter().map(|n| n.kind_name()).collect();
    assert_eq!(
        kinds,
        [
            "leaf",
            "leaf",
            "leaf",
            "matmul",
            "bias_add",
            "add",
            "mul",
            "max",
            "sum",
            "l2",
            "svm_loss",
            "softmax_loss",
            "relu",
            "sigmoid",
            "tanh",
            "leaky_relu",
            "elu",
            "gelu",
            "standardize",
        ]
    );
}

/// The trace of `Z = X·W + b` with the upstream gradient `G` seeded on Z, in tape order:
/// x, w, b, X·W, Z.
fn affine_trace(with_values: bool) -> Trace<f64> {
    let mut g = Graph::<f64>::new();
    let x = g.leaf(
        "x",
        arr2(&[[1.0, 2.0, 0.0], [-1.0, 0.0, 3.0]]).into_dyn(),
        true,
    );
    let w = g.leaf(
        "w",
        arr2(&[[1.0, -1.0], [0.0, 2.0], [3.0, 1.0]]).into_dyn(),
        true,
    );
    let b = g.leaf("b", arr1(&[0.5, -0.5]).into_dyn(), true);
    let s = g.matmul(x, w).unwrap();
    let z = g.bias_add(s, b).unwrap();
    let up = arr2(&[[1.0, 2.0], [3.0, 4.0]]).into_dyn();
    g.trace(vec![(z, up)], Landmarks::default(), with_values)
        .unwrap()
}

#[test]
fn trace_gives_matmul_and_bias_add_their_local_gradients() {
    // X·W = [[1, 3], [8, 4]], Z = X·W + b = [[1.5, 2.5], [8.5, 3.5]], G = [[1, 2], [3, 4]].
    let t = affine_trace(true);
    let (mm, ba) = (&t.nodes[3], &t.nodes[4]);
    assert_eq!(
        mm.value.as_ref().unwrap(),
        &arr2(&[[1.0, 3.0], [8.0, 4.0]]).into_dyn()
    );
    assert_eq!(
        ba.value.as_ref().unwrap(),
        &arr2(&[[1.5, 2.5], [8.5, 3.5]]).into_dyn()
    );
    // matmul: the local gradient of X is W, and D = G·Wᵀ; that of W is X, and D = Xᵀ·G.
    let e = &mm.edges;
    assert_eq!((e[0].input, e[0].rule), (0, LocalRule::MatmulRight));
    assert_eq!(
        e[0].local.as_ref().unwrap(),
        &arr2(&[[1.0, -1.0], [0.0, 2.0], [3.0, 1.0]]).into_dyn()
    );
    assert_eq!(
        e[0].downstream.as_ref().unwrap(),
        &arr2(&[[-1.0, 4.0, 5.0], [-1.0, 8.0, 13.0]]).into_dyn()
    );
    assert_eq!((e[1].input, e[1].rule), (1, LocalRule::MatmulLeft));
    assert_eq!(
        e[1].local.as_ref().unwrap(),
        &arr2(&[[1.0, 2.0, 0.0], [-1.0, 0.0, 3.0]]).into_dyn()
    );
    assert_eq!(
        e[1].downstream.as_ref().unwrap(),
        &arr2(&[[-2.0, -2.0], [2.0, 4.0], [9.0, 12.0]]).into_dyn()
    );
    // bias_add: A's local gradient is 1 elementwise (D = G); b's is the column of ones
    // over the N = 2 rows, and D = 1ᵀ·G, the column sums of G.
    let e = &ba.edges;
    assert_eq!((e[0].input, e[0].rule), (3, LocalRule::Elementwise));
    assert_eq!(
        e[0].local.as_ref().unwrap(),
        &ArrayD::from_elem(IxDyn(&[2, 2]), 1.0)
    );
    assert_eq!(
        e[0].downstream.as_ref().unwrap(),
        &arr2(&[[1.0, 2.0], [3.0, 4.0]]).into_dyn()
    );
    assert_eq!((e[1].input, e[1].rule), (2, LocalRule::MatmulLeft));
    assert_eq!(e[1].local.as_ref().unwrap(), &arr1(&[1.0, 1.0]).into_dyn());
    assert_eq!(
        e[1].downstream.as_ref().unwrap(),
        &arr1(&[4.0, 6.0]).into_dyn()
    );
    assert_eq!(mm.grad.as_ref().unwrap(), e[0].downstream.as_ref().unwrap());
}

#[test]
fn trace_without_values_still_names_each_edge_rule() {
    let t = affine_trace(false);
    let rules: Vec<Vec<LocalRule>> = t
        .nodes
        .iter()
        .map(|n| n.edges.iter().map(|e| e.rule).collect())
        .collect();
    use LocalRule::*;
    assert_eq!(
        rules,
        [
            vec![],
            vec![],
            vec![],
            vec![MatmulRight, MatmulLeft],
            vec![Elementwise, MatmulLeft],
        ]
    );
    assert!(
        t.nodes
            .iter()
            .flat_map(|n| &n.edges)
            .all(|e| e.local.is_none())
    );
}

/// `dL/dx` of one activation on `x` under the upstream gradient `up`, with its value.
fn activation_backward<A: Activation>(
    act: A,
    x: ArrayD<f64>,
    up: ArrayD<f64>,
) -> (ArrayD<f64>, ArrayD<f64>) {
    let mut g = Graph::<f64>::new();
    let id = g.leaf("x", x, true);
    let y = g.activation(id, act).unwrap();
    let grads = g.backward(vec![(y, up)], Default::default()).unwrap();
    (g.value(y).to_owned(), grads.get(id).unwrap().clone())
}

#[test]
fn relu_and_leaky_relu_take_the_lower_slope_at_zero() {
    // At x = 0 (and −0) the subgradient is the left one: 0 for ReLU, α for leaky ReLU.
    // A numeric check cannot see this (it must stay away from the kink).
    let x = arr1(&[0.0, -0.0, 2.0, -3.0]).into_dyn();
    let up = arr1(&[10.0, 20.0, 30.0, 40.0]).into_dyn();
    let (y, dx) = activation_backward(Relu, x.clone(), up.clone());
    assert_eq!(y, arr1(&[0.0, 0.0, 2.0, 0.0]).into_dyn());
    assert_eq!(dx, arr1(&[0.0, 0.0, 30.0, 0.0]).into_dyn());
    let (y, dx) = activation_backward(LeakyRelu { slope: 0.25 }, x, up);
    assert_eq!(y, arr1(&[0.0, 0.0, 2.0, -0.75]).into_dyn());
    assert_eq!(dx, arr1(&[2.5, 5.0, 30.0, 10.0]).into_dyn());
}

#[test]
fn sigmoid_saturates_without_overflow() {
    // e^1000 overflows f64: σ must take e^−x for x ≥ 0 and eˣ for x < 0.
    // σ(±1000) and σ(40) round to 0 and 1 exactly; σ(−40) = e^−40/(1 + e^−40).
    let x = arr1(&[-1000.0, -40.0, 40.0, 1000.0]).into_dyn();
    let up = arr1(&[1.0, 1.0, 1.0, 1.0]).into_dyn();
    let (y, dx) = activation_backward(Sigmoid, x, up);
    let tiny = (-40.0f64).exp();
    assert_eq!(y[0], 0.0);
    assert!((y[1] - tiny).abs() < 1e-15 * tiny, "{}", y[1]);
    assert_eq!((y[2], y[3]), (1.0, 1.0));
    // y(1 − y): 0 where saturated, ≈ e^−40 at −40.
    assert_eq!((dx[0], dx[2], dx[3]), (0.0, 0.0, 0.0));
    assert!((dx[1] - tiny).abs() < 1e-15 * tiny, "{}", dx[1]);
}

#[test]
fn local_rules_have_the_names_the_trace_prints() {
    // `backprop graph` writes these strings into its JSON.
    let names: Vec<&str> = [
        LocalRule::Elementwise,
        LocalRule::MatmulRight,
        LocalRule::MatmulLeft,
        LocalRule::Scale,
        LocalRule::Unknown,
    ]
    .into_iter()
    .map(LocalRule::name)
    .collect();
    assert_eq!(
        names,
        [
            "elementwise",
            "matmul_right",
            "matmul_left",
            "scale",
            "unknown"
        ]
    );
}
