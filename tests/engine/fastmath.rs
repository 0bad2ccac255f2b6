//! The f32 approximations of `engine::fastmath`, and the activations built on them,
//! against f64 libm: the largest error over the f32 line within the bounds the module
//! documents, the special values, and the same bits whether an element is computed in a
//! long slice or alone.
//!
//! The default tests take every f32 in |x| ∈ [¼, 4) (where the reduction's n is small and
//! `eˣ − 1` and `tanh` cancel most) and every 251st bit pattern elsewhere, so that they
//! stay quick in the dev profile. The ignored test takes all 2³² bit patterns; run it in
//! release: `cargo test --release --test engine fastmath -- --ignored --nocapture`.
use std::ops::RangeInclusive;

use backprop::engine::fastmath;
use backprop::engine::ops::{elu::Elu, sigmoid::Sigmoid, tanh::Tanh};
use backprop::engine::{Activation, Graph};
use ndarray::{ArrayView1, ArrayViewD};

/// The bounds of fastmath.rs's table, in ulps and relative.
const EXP_ULP: f64 = 1.0;
const EXP_M1_ULP: f64 = 1.5;
const TANH_ULP: f64 = 2.5;
/// Sigmoid and ELU are compositions: `1/(1 + e)` adds two roundings to `exp`'s error.
const SIGMOID_ULP: f64 = 2.5;
const ELU_ULP: f64 = EXP_M1_ULP;

/// The exact value's ulp in f32: 2^(e−23) for 2^e ≤ |v| < 2^(e+1), 2⁻¹⁴⁹ (the subnormals'
/// spacing) below 2⁻¹²⁶, and f32::MAX's ulp at and beyond 2¹²⁸.
fn ulp_of(v: f64) -> f64 {
    let a = v.abs();
    if a < f64::from(f32::MIN_POSITIVE) {
        return 2f64.powi(-149);
    }
    let e = ((a.to_bits() >> 52) as i32 - 1023).min(127);
    2f64.powi(e - 23)
}

/// An infinity counts as ±2¹²⁸, the first value past f32::MAX's rounding range, so that
/// `inf` for an exact value just below the overflow threshold is a (small) error.
fn finite_or_2_128(v: f64) -> f64 {
    let cap = 2f64.powi(128);
    v.clamp(-cap, cap)
}

/// The largest error seen, with its input.
#[derive(Debug, Default, Clone, Copy)]
struct Worst {
    ulp: f64,
    ulp_at: f32,
    relative: f64,
    relative_at: f32,
    count: u64,
}

impl Worst {
    fn record(&mut self, x: f32, got: f32, want: f64, what: &str) {
        self.count += 1;
        if want.is_nan() || got.is_nan() {
            assert!(
                want.is_nan() && got.is_nan(),
                "{what}({x:e}) = {got:e}, libm gives {want:e}"
            );
            return;
        }
        let (g, w) = (finite_or_2_128(f64::from(got)), finite_or_2_128(want));
        let ulp = (g - w).abs() / ulp_of(w);
        if ulp > self.ulp {
            (self.ulp, self.ulp_at) = (ulp, x);
        }
        let normal = w.abs() >= f64::from(f32::MIN_POSITIVE) && w.abs() <= f64::from(f32::MAX);
        if normal {
            let relative = (g - w).abs() / w.abs();
            if relative > self.relative {
                (self.relative, self.relative_at) = (relative, x);
            }
        }
    }

    fn merge(mut self, other: Worst) -> Worst {
        if other.ulp > self.ulp {
            (self.ulp, self.ulp_at) = (other.ulp, other.ulp_at);
        }
        if other.relative > self.relative {
            (self.relative, self.relative_at) = (other.relative, other.relative_at);
        }
        self.count += other.count;
        self
    }
}

/// One approximation and its reference.
struct Case {
    name: &'static str,
    fast: fn(f32) -> f32,
    libm: fn(f64) -> f64,
    bound_ulp: f64,
    /// Where the result must lie (tanh and sigmoid never leave theirs).
    range: RangeInclusive<f32>,
}

fn sigmoid_f64(x: f64) -> f64 {
    Sigmoid.f(x)
}

fn elu_f32(x: f32) -> f32 {
    Elu { alpha: 1.0 }.f(x)
}

fn elu_f64(x: f64) -> f64 {
    Elu { alpha: 1.0 }.f(x)
}

fn cases() -> [Case; 5] {
    let all = f32::NEG_INFINITY..=f32::INFINITY;
    [
        Case {
            name: "exp",
            fast: fastmath::exp,
            libm: f64::exp,
            bound_ulp: EXP_ULP,
            range: 0.0..=f32::INFINITY,
        },
        Case {
            name: "exp_m1",
            fast: fastmath::exp_m1,
            libm: f64::exp_m1,
            bound_ulp: EXP_M1_ULP,
            range: -1.0..=f32::INFINITY,
        },
        Case {
            name: "tanh",
            fast: fastmath::tanh,
            libm: f64::tanh,
            bound_ulp: TANH_ULP,
            range: -1.0..=1.0,
        },
        Case {
            name: "sigmoid",
            fast: |x| Sigmoid.f(x),
            libm: sigmoid_f64,
            bound_ulp: SIGMOID_ULP,
            range: 0.0..=1.0,
        },
        Case {
            name: "elu",
            fast: elu_f32,
            libm: elu_f64,
            bound_ulp: ELU_ULP,
            range: all,
        },
    ]
}

/// The errors of `case` over the bit patterns `bits` taken `step` apart, on two threads.
fn sweep(case: &Case, bits: RangeInclusive<u32>, step: usize) -> Worst {
    let (lo, hi) = (*bits.start(), *bits.end());
    let mid = lo + (hi - lo) / 2;
    let part = |from: u32, to: u32| {
        let mut worst = Worst::default();
        for b in (from..=to).step_by(step) {
            let x = f32::from_bits(b);
            let got = (case.fast)(x);
            assert!(
                got.is_nan() || case.range.contains(&got),
                "{}({x:e}) = {got:e} is outside {:?}",
                case.name,
                case.range
            );
            worst.record(x, got, (case.libm)(f64::from(x)), case.name);
        }
        worst
    };
    std::thread::scope(|s| {
        let upper = s.spawn(|| part(mid + 1, hi));
        let lower = part(lo, mid);
        lower.merge(upper.join().expect("sweep thread"))
    })
}

fn report_and_check(case: &Case, worst: Worst) {
    eprintln!(
        "{:8} max {:.3} ulp at {:e}, max relative {:.3e} at {:e} ({} inputs)",
        case.name, worst.ulp, worst.ulp_at, worst.relative, worst.relative_at, worst.count
    );
    assert!(
        worst.ulp <= case.bound_ulp,
        "{}: {:.3} ulp at {:e} exceeds the documented {} ulp",
        case.name,
        worst.ulp,
        worst.ulp_at,
        case.bound_ulp
    );
}

/// Bit patterns of the positive f32 in [¼, 4), and of their negatives.
const DENSE: [RangeInclusive<u32>; 2] = [0x3e80_0000..=0x407f_ffff, 0xbe80_0000..=0xc07f_ffff];

fn dense_and_strided(name: &str) {
    let case = cases().into_iter().find(|c| c.name == name).unwrap();
    let worst = DENSE
        .into_iter()
        .map(|bits| sweep(&case, bits, 1))
        .fold(sweep(&case, 0..=u32::MAX, 251), Worst::merge);
    report_and_check(&case, worst);
}

#[test]
fn exp_within_its_bound() {
    dense_and_strided("exp");
}

#[test]
fn exp_m1_within_its_bound() {
    dense_and_strided("exp_m1");
}

#[test]
fn tanh_within_its_bound() {
    dense_and_strided("tanh");
}

#[test]
fn sigmoid_within_its_bound_and_in_0_1() {
    dense_and_strided("sigmoid");
}

#[test]
fn elu_within_its_bound() {
    dense_and_strided("elu");
}

#[test]
#[ignore = "all 2³² inputs: about a minute per function in release"]
fn every_f32_within_its_bound() {
    for case in cases() {
        let worst = sweep(&case, 0..=u32::MAX, 1);
        report_and_check(&case, worst);
    }
}

/// Same value and same sign (so +0 and −0 differ), or both NaN.
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[track_caller]
fn assert_is(got: f32, want: f32, what: &str) {
    assert!(same(got, want), "{what} = {got:e}, expected {want:e}");
}

#[test]
fn specials_of_exp() {
    use fastmath::exp;
    let tiny = f32::from_bits(1);
    assert_is(exp(0.0), 1.0, "exp(0)");
    assert_is(exp(-0.0), 1.0, "exp(-0)");
    assert_is(exp(tiny), 1.0, "exp(least subnormal)");
    assert_is(exp(-tiny), 1.0, "exp(-least subnormal)");
    assert_is(exp(f32::INFINITY), f32::INFINITY, "exp(inf)");
    assert_is(exp(f32::NEG_INFINITY), 0.0, "exp(-inf)");
    assert!(exp(f32::NAN).is_nan());
    assert_is(exp(f32::MAX), f32::INFINITY, "exp(MAX)");
    assert_is(exp(f32::MIN), 0.0, "exp(MIN)");
    // The last input whose e^x is below f32::MAX, and the next one.
    assert!(exp(88.722_83).is_finite());
    assert_is(exp(88.722_84), f32::INFINITY, "exp(88.72284)");
    // The normal/subnormal boundary, and the last nonzero result.
    assert!(exp(-87.336_54) >= f32::MIN_POSITIVE);
    assert!(exp(-87.4).is_subnormal());
    assert_is(exp(-103.972_08), tiny, "exp(-103.97208)");
    assert_is(exp(-103.98), 0.0, "exp(-103.98)");
    assert_is(exp(-104.0), 0.0, "exp(-104)");
}

#[test]
fn specials_of_exp_m1() {
    use fastmath::exp_m1;
    let tiny = f32::from_bits(1);
    assert_is(exp_m1(0.0), 0.0, "exp_m1(0)");
    assert_is(exp_m1(-0.0), -0.0, "exp_m1(-0)");
    assert_is(exp_m1(tiny), tiny, "exp_m1(least subnormal)");
    assert_is(exp_m1(-tiny), -tiny, "exp_m1(-least subnormal)");
    assert_is(exp_m1(1e-30), 1e-30, "exp_m1(1e-30)");
    assert_is(exp_m1(f32::INFINITY), f32::INFINITY, "exp_m1(inf)");
    assert_is(exp_m1(f32::NEG_INFINITY), -1.0, "exp_m1(-inf)");
    assert_is(exp_m1(f32::MIN), -1.0, "exp_m1(MIN)");
    assert_is(exp_m1(-17.4), -1.0, "exp_m1(-17.4)");
    // e⁻¹⁶ is two ulps of 1 from below: not yet −1.
    assert!(exp_m1(-16.0) > -1.0);
    assert!(exp_m1(f32::NAN).is_nan());
    assert!(exp_m1(88.722_83).is_finite());
    assert_is(exp_m1(88.722_84), f32::INFINITY, "exp_m1(88.72284)");
}

#[test]
fn specials_of_tanh() {
    use fastmath::tanh;
    let tiny = f32::from_bits(1);
    assert_is(tanh(0.0), 0.0, "tanh(0)");
    assert_is(tanh(-0.0), -0.0, "tanh(-0)");
    assert_is(tanh(tiny), tiny, "tanh(least subnormal)");
    assert_is(tanh(-tiny), -tiny, "tanh(-least subnormal)");
    for x in [9.1, 10.0, 1000.0, f32::MAX, f32::INFINITY] {
        assert_is(tanh(x), 1.0, &format!("tanh({x:e})"));
        assert_is(tanh(-x), -1.0, &format!("tanh({:e})", -x));
    }
    assert!(tanh(8.9) < 1.0);
    assert!(tanh(f32::NAN).is_nan());
}

#[test]
fn specials_of_sigmoid_and_elu() {
    let sigmoid = |x: f32| Sigmoid.f(x);
    assert_is(sigmoid(0.0), 0.5, "σ(0)");
    assert_is(sigmoid(-0.0), 0.5, "σ(-0)");
    assert_is(sigmoid(1000.0), 1.0, "σ(1000)");
    assert_is(sigmoid(-1000.0), 0.0, "σ(-1000)");
    assert_is(sigmoid(f32::INFINITY), 1.0, "σ(inf)");
    assert_is(sigmoid(f32::NEG_INFINITY), 0.0, "σ(-inf)");
    assert!(sigmoid(f32::NAN).is_nan());
    assert!(sigmoid(-100.0) > 0.0, "σ(-100) is a subnormal, not 0");

    let elu = |x: f32| Elu { alpha: 1.0 }.f(x);
    assert_is(elu(0.0), 0.0, "elu(0)");
    assert_is(elu(-0.0), -0.0, "elu(-0)");
    assert_is(elu(3.5), 3.5, "elu(3.5)");
    assert_is(elu(f32::INFINITY), f32::INFINITY, "elu(inf)");
    assert_is(elu(f32::NEG_INFINITY), -1.0, "elu(-inf)");
    assert_is(elu(-1000.0), -1.0, "elu(-1000)");
    assert!(elu(f32::NAN).is_nan());
}

/// Inputs across every regime: tiny, the reduction's boundaries, saturation, the specials.
fn assorted(len: usize) -> Vec<f32> {
    let specials = [
        0.0,
        -0.0,
        f32::from_bits(1),
        f32::MIN_POSITIVE,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        88.72,
        -103.9,
        9.5,
    ];
    (0..len)
        .map(|i| match specials.get(i % 37) {
            Some(&s) => s,
            // A sawtooth over [−120, 120), stepping by an irrational-ish amount.
            None => ((i as f32 * 0.618_034).fract() - 0.5) * 240.0,
        })
        .collect()
}

/// `act`'s forward over `xs` through the gate (its loop over the whole slice).
fn forward<A: Activation + Copy>(xs: &[f32], act: A) -> Vec<f32> {
    let mut g = Graph::<f32>::new();
    let view: ArrayViewD<'_, f32> = ArrayView1::from(xs).into_dyn();
    let x = g.leaf_view("x", view, false);
    let y = g.activation(x, act).unwrap();
    g.value(y).iter().copied().collect()
}

fn same_bits_in_any_slice<A: Activation + Copy>(act: A) {
    let buf = assorted(1031);
    let alone: Vec<f32> = buf.iter().map(|&x| forward(&[x], act)[0]).collect();
    for offset in 0..8 {
        for len in [1, 3, 7, 8, 15, 16, 17, 64, 1000] {
            let xs = &buf[offset..offset + len];
            for (i, (&got, &x)) in forward(xs, act).iter().zip(xs).enumerate() {
                let want = alone[offset + i];
                assert!(
                    same(got, want),
                    "{}({x:e}) at offset {offset}, slice of {len}: {got:e}, alone {want:e}",
                    A::KIND
                );
                assert!(same(got, act.f(x)), "{}({x:e}) scalar", A::KIND);
            }
        }
    }
}

#[test]
fn same_bits_whatever_the_slice_length_and_alignment() {
    same_bits_in_any_slice(Tanh);
    same_bits_in_any_slice(Sigmoid);
    same_bits_in_any_slice(Elu { alpha: 1.0 });
}
