//! `eˣ`, `eˣ − 1` and `tanh x` in f32, written so that a loop over a slice vectorises.
//!
//! Why: libm's `expf`, `expm1f` and `tanhf` are calls with branches inside, so a loop that
//! makes one per element stays scalar. A W4 step (bench/README.md) applies its activation
//! to 98,304 elements, and the calls made tanh, ELU and sigmoid up to 24% slower than
//! ReLU (docs/PERFORMANCE.md).
//! Here every function is straight-line code: comparisons become selects, 2ⁿ is built
//! from exponent bits, and nothing calls out, so LLVM maps a loop of them onto SIMD lanes.
//! Only f32 uses them ([`Scalar`](super::scalar::Scalar)); f64 keeps libm, since f64 is
//! the gradient-check and PyTorch-parity path.
//!
//! The method, shared by all three:
//! 1. clamp x (NaN passes through) to where the result is not yet inf, 0 or −1;
//! 2. Cody–Waite range reduction: `n = round(x·log₂e)`, `r = (x − n·LN2_HI) − n·LN2_LO`,
//!    `LN2_HI` being ln 2 rounded to 16 bits so that `n·LN2_HI` is exact, which leaves
//!    `|r| ≤ ½ln 2` with one rounding;
//! 3. `q = r + r²·P(r) ≈ eʳ − 1`, `P` of degree 5 (the coefficients `C2`…`C7`);
//! 4. scale by 2ⁿ, built from exponent bits.
//!
//! `P` is a minimax fit of the relative error of `eʳ − 1` on `|r| ≤ ½ln 2`, made with
//! `docs/fastmath_fit.py` (Lawson's reweighted least squares, 30 digits, mpmath); rounded
//! to f32 its relative error is 2.2·10⁻⁹, a few hundredths of an ulp.
//!
//! Errors against f64 libm, measured on all 2³² inputs (tests/engine/fastmath.rs: its
//! default tests take every f32 in |x| ∈ [¼, 4) and a stride elsewhere, its ignored test
//! every bit pattern); an ulp is 2^(e−23) for an exact value in [2^e, 2^(e+1)), 2⁻¹⁴⁹ in
//! the subnormals. The bound is what the tests assert:
//!
//! | function | bound | measured max | measured max relative (normal results) |
//! |---|---|---|---|
//! | [`exp`] | 1 ulp | 0.951 ulp | 7.95·10⁻⁸ |
//! | [`exp_m1`] | 1.5 ulp | 1.475 ulp (at x ≈ 0.35, where n turns 1 and 2q + 1 cancels) | 1.17·10⁻⁷ |
//! | [`tanh`] | 2.5 ulp | 2.424 ulp | 1.76·10⁻⁷ |
//!
//! Built on them, the f32 sigmoid stays within 2.5 ulp (2.402 measured) and ELU (α = 1)
//! within 1.5 (0.842).
//!
//! Domain (libm's, to within the bounds above): NaN gives NaN; `exp` overflows to +inf
//! above ln(f32::MAX) ≈ 88.72 and underflows through the subnormals (rounded once) to +0
//! below −103.97; `exp_m1` gives +inf above 88.72 and exactly −1 from about −17 down
//! (libm from −17.33; in between the two differ by under an ulp); `tanh` is exactly
//! ±1 beyond |x| ≈ 9.01 and never leaves [−1, 1]. `exp(±0) = 1`, `exp_m1(±0) = ±0`,
//! `tanh(±0) = ±0`, and subnormal x gives x for `exp_m1` and `tanh`.
//!
//! Determinism: each result depends only on its input. Rust does not fuse `a·b + c` into
//! an FMA unless asked (`mul_add`, never used here), so the SIMD body of a loop and its
//! scalar remainder give the same bits, whatever the slice's length or alignment.

/// `round(v)` for |v| < 2²²: adding 1.5·2²³ leaves the nearest integer (ties to even, the
/// FPU's rounding) in the low mantissa bits; SSE2 has no vector `round`.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// ln 2 to 16 significant bits (45426/65536), so that `n·LN2_HI` is exact for |n| < 2⁸.
const LN2_HI: f32 = 0.693_145_75;
/// `ln 2 − LN2_HI`, rounded to f32.
const LN2_LO: f32 = 1.428_606_8e-6;

// The polynomial `P(r) = C2 + C3·r + … + C7·r⁵` of step 3 (docs/fastmath_fit.py); each
// is close to its Taylor coefficient 1/k!.
const C2: f32 = 0.5;
const C3: f32 = f32::from_bits(0x3e2a_aaaa);
const C4: f32 = f32::from_bits(0x3d2a_aa59);
const C5: f32 = f32::from_bits(0x3c08_88c5);
const C6: f32 = f32::from_bits(0x3ab6_b8f3);
const C7: f32 = f32::from_bits(0x3950_195f);

/// Below this `exp` is +0 (e⁻¹⁰⁴ < 2⁻¹⁵⁰, half the least subnormal); above `EXP_MAX` it
/// is +inf (e⁸⁹ > f32::MAX). Both keep `n` within the range `pow2` can build in two halves.
const EXP_MIN: f32 = -104.0;
const EXP_MAX: f32 = 89.0;
/// Below this `exp_m1` is −1 (e⁻¹⁸ < 2⁻²⁵, half an ulp of 1 from below).
const EXP_M1_MIN: f32 = -18.0;
/// Beyond this `tanh` is ±1: 1 − tanh 9.5 ≈ 2e⁻¹⁹ is below half an ulp of 1 (2⁻²⁵).
const TANH_SATURATES: f32 = 9.5;

/// `x` limited to `[lo, hi]`; a NaN stays NaN (`f32::clamp` would too, but asserts
/// `lo ≤ hi` at run time, and `min`/`max` would drop it).
#[inline(always)]
fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x < lo { lo } else { x };
    if x > hi { hi } else { x }
}

/// `2ⁿ` for −126 ≤ n ≤ 127, from its exponent bits. Other `n` (only reached when x is
/// NaN, whose result is NaN anyway) give some float, never a panic.
#[inline(always)]
fn pow2(n: i32) -> f32 {
    f32::from_bits((n.wrapping_add(127) as u32).wrapping_shl(23))
}

/// Steps 2 and 3: `(n, q)` with `x = n·ln 2 + r` and `q ≈ eʳ − 1`.
#[inline(always)]
fn reduce(x: f32) -> (i32, f32) {
    let k = x * std::f32::consts::LOG2_E + ROUND_MAGIC;
    let n = (k.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let nf = k - ROUND_MAGIC;
    let r = (x - nf * LN2_HI) - nf * LN2_LO;
    let p = C2 + r * (C3 + r * (C4 + r * (C5 + r * (C6 + r * C7))));
    (n, r + (r * r) * p)
}

/// `eˣ` (max error 1 ulp; see the module's table).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let (n, q) = reduce(clamp(x, EXP_MIN, EXP_MAX));
    // 2ⁿ in two factors, each a normal float for −150 ≤ n ≤ 128: `(1 + q)·2^⌊n/2⌋` is
    // exact, so a subnormal or overflowing result is rounded once, by the last product.
    let half = n >> 1;
    (1.0 + q) * pow2(half) * pow2(n - half)
}

/// `eˣ − 1`, accurate near 0 where `exp(x) − 1` would cancel (max error 1.5 ulp).
#[inline(always)]
pub fn exp_m1(x: f32) -> f32 {
    let (n, q) = reduce(clamp(x, EXP_M1_MIN, EXP_MAX));
    // eˣ − 1 = 2ⁿ·q + (2ⁿ − 1): both terms are exact for |n| ≤ 24, so the sum rounds once;
    // beyond, the rounding of 2ⁿ − 1 is a fraction of the result's ulp. 2¹²⁸ (x within
    // 0.35 of overflow) is not a float: that case scales 2¹²⁷ by 2 after the sum.
    let m = if n > 127 { 127 } else { n };
    let s = pow2(m);
    let y = (s * q + (s - 1.0)) * pow2(n - m);
    // The sum above turns −0 into +0.
    if x == 0.0 { x } else { y }
}

/// `tanh x` (max error 2.5 ulp), as `t/(t + 2)` with `t = e^{2|x|} − 1`, then x's sign:
/// from `exp_m1`, so that small x keeps its relative accuracy.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    // Past the clamp t + 2 rounds to t, so the quotient is exactly 1 (and never inf/inf).
    let a = if a > TANH_SATURATES {
        TANH_SATURATES
    } else {
        a
    };
    let t = exp_m1(2.0 * a);
    (t / (t + 2.0)).copysign(x)
}
