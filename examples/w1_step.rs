//! Workload W1 (bench/README.md) on our engine: one TrainStep of the CIFAR-sized
//! two-layer net, timed step by step, printed as one JSON line with the same fields as
//! `bench/numpy_w1.py`, so `bench/w1_compare.sh` can set the two side by side.
//!
//! Run: `BACKPROP_MATMUL_THREADS=1 cargo run --release --example w1_step -- --iters 200`
//! Args: `--iters N` (timed steps, 200), `--warmup N` (untimed, 20), `--seed S` (0),
//! `--dtype f32|f64` (f32), `--json PATH` (also write the line there).
//!
//! Threads: `BACKPROP_MATMUL_THREADS` (default 1) is passed to
//! `backprop::engine::matmul_kernel::set_threads`, as `backprop serve --matmul-threads`
//! does. The allocator is tuned as in the server (`backprop::malloc`).
//!
//! The W1 definition (spec, data, FLOP count) lives here and `benches/engine.rs` includes
//! this file, so the criterion bench and this comparison cannot drift apart.
use std::process::ExitCode;
use std::time::Instant;

use backprop::engine::rng::Rng;
use backprop::model::{
    ActivationSpec, DType, HiddenSpec, InitSpec, LossSpec, Model, ModelSpec, OptimizerSpec,
};
use ndarray::Array2;

/// W1's batch, input, hidden and class sizes.
pub const N: usize = 200;
pub const D: usize = 3072;
pub const H: usize = 100;
pub const C: usize = 10;

/// W1: 3072-100(ReLU)-10, SVM Δ = 1, λ = 1e-3, SGD lr = 1e-3, f32. Weights are drawn as
/// in the numpy reference, `0.01·randn` (so the first loss is ≈ C − 1 = 9).
pub fn w1_spec() -> ModelSpec {
    let relu = HiddenSpec {
        units: H,
        activation: ActivationSpec::Relu,
    };
    ModelSpec {
        loss: LossSpec::Svm { margin: 1.0 },
        l2: 1e-3,
        optimizer: OptimizerSpec::Sgd(backprop::model::Sgd { lr: 1e-3 }),
        init: InitSpec::Gaussian { scale: 1e-2 },
        seed: 0,
        dtype: DType::F32,
        ..ModelSpec::new(D, vec![relu], C)
    }
}

/// Seeded Gaussian blobs, one per class, as in the numpy reference: class centres
/// `~ N(0, I)`, row i has label `i mod c` and is its centre plus `N(0, I)` noise.
pub fn blobs(n: usize, d: usize, c: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let centres = Array2::from_shape_simple_fn((c, d), || rng.normal());
    let labels: Vec<usize> = (0..n).map(|i| i % c).collect();
    let x = Array2::from_shape_fn((n, d), |(i, j)| {
        (centres[[labels[i], j]] + rng.normal()) as f32
    });
    (x, labels)
}

/// `(fan_in, fan_out, pieces)` of every dense layer of `spec`, input to output.
fn layers(spec: &ModelSpec) -> Vec<(u64, u64, u64)> {
    let mut fan_in = spec.input_dim as u64;
    let mut out = Vec::new();
    for h in &spec.hidden {
        let pieces = match h.activation {
            ActivationSpec::Maxout { pieces } => pieces as u64,
            _ => 1,
        };
        out.push((fan_in, h.units as u64, pieces));
        fan_in = h.units as u64;
    }
    out.push((fan_in, spec.num_classes as u64, 1));
    out
}

/// Forward FLOP of a batch of `n`: `2·N·D·H` per dense layer (and per maxout piece).
pub fn forward_flop(spec: &ModelSpec, n: usize) -> u64 {
    let n = n as u64;
    layers(spec)
        .iter()
        .map(|&(d, h, p)| 2 * n * d * h * p)
        .sum()
}

/// TrainStep FLOP, counted as in bench/README.md: forward, dW of every layer, dX of every layer
/// but the first. W1: 246.96e6.
pub fn train_step_flop(spec: &ModelSpec, n: usize) -> u64 {
    let n = n as u64;
    layers(spec)
        .iter()
        .enumerate()
        .map(|(i, &(d, h, p))| {
            let passes = if i == 0 { 2 } else { 3 };
            passes * 2 * n * d * h * p
        })
        .sum()
}

struct Args {
    iters: usize,
    warmup: usize,
    seed: u64,
    dtype: DType,
    json: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        iters: 200,
        warmup: 20,
        seed: 0,
        dtype: DType::F32,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag} {v:?}: {e}"));
        match flag.as_str() {
            "--iters" => args.iters = number(value()?)? as usize,
            "--warmup" => args.warmup = number(value()?)? as usize,
            "--seed" => args.seed = number(value()?)?,
            "--json" => args.json = Some(value()?),
            "--dtype" => {
                args.dtype = match value()?.as_str() {
                    "f32" => DType::F32,
                    "f64" => DType::F64,
                    other => return Err(format!("--dtype {other:?}: f32 or f64")),
                }
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; use --iters N --warmup N --seed S \
                     --dtype f32|f64 --json PATH"
                ));
            }
        }
    }
    if args.iters == 0 {
        return Err("--iters must be at least 1".into());
    }
    Ok(args)
}

/// The value at fraction `q` of sorted `v`, interpolated linearly (numpy's default).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

fn run(args: &Args) -> Result<bool, String> {
    match args.dtype {
        DType::F32 => run_in::<f32>(args),
        DType::F64 => run_in::<f64>(args),
    }
}

fn run_in<T: backprop::engine::scalar::Scalar>(args: &Args) -> Result<bool, String> {
    let mut spec = w1_spec();
    spec.seed = args.seed;
    spec.dtype = args.dtype;
    let flop = train_step_flop(&spec, N);
    let (x, labels) = blobs(N, D, C, args.seed);
    let x = x.mapv(|v| T::of(f64::from(v)));
    let mut model = Model::<T>::new(spec).map_err(|e| e.to_string())?;
    let mut step = || -> Result<f64, String> {
        let report = model
            .train_step(x.view(), &labels)
            .map_err(|e| e.to_string())?;
        report.losses.total().ok_or("no data loss".to_string())
    };

    let loss_first = step()?;
    for _ in 0..args.warmup {
        step()?;
    }
    let mut ms = Vec::with_capacity(args.iters);
    let mut loss_last = loss_first;
    for _ in 0..args.iters {
        let t0 = Instant::now();
        loss_last = step()?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let median = percentile(&ms, 0.5);
    let threads_env = std::env::var("BACKPROP_MATMUL_THREADS").ok();
    let out = serde_json::json!({
        "impl": "rust",
        "workload": "W1",
        "dtype": T::NAME,
        "threads": backprop::engine::matmul_kernel::threads(),
        "matmul_threads_env": threads_env,
        "iters": args.iters,
        "median_ms": round4(median),
        "p10_ms": round4(percentile(&ms, 0.1)),
        "p90_ms": round4(percentile(&ms, 0.9)),
        "flop_per_step": flop,
        "gflops": (flop as f64 / (median * 1e-3) / 1e9 * 100.0).round() / 100.0,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "loss_first": loss_first,
        "loss_last": loss_last,
    });
    let line = out.to_string();
    println!("{line}");
    if let Some(path) = &args.json {
        std::fs::write(path, line + "\n").map_err(|e| format!("{path}: {e}"))?;
    }
    if loss_last < loss_first {
        Ok(true)
    } else {
        eprintln!("loss did not decrease: {loss_first} -> {loss_last}");
        Ok(false)
    }
}

/// Applies `BACKPROP_MATMUL_THREADS` and the server's allocator settings.
pub fn setup_process() {
    backprop::malloc::keep_step_buffers();
    let threads = std::env::var("BACKPROP_MATMUL_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    backprop::engine::matmul_kernel::set_threads(threads);
}

fn main() -> ExitCode {
    setup_process();
    match parse_args().and_then(|a| run(&a)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("w1_step: {e}");
            ExitCode::from(2)
        }
    }
}
