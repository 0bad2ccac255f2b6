//! Criterion benchmarks of the engine on the workloads of bench/README.md.
//!
//! - `w1/train_step`: one W1 TrainStep (3072-100 ReLU-10, N = 200, SVM, L2, SGD, f32).
//! - `forward/w1_scores`: W1's scores only (the Forward RPC's math).
//! - `w4/<activation>`: one TrainStep of 3072-512-256-10, N = 128, per activation.
//!
//! Throughput is set to the FLOP of one iteration (bench/README.md's count: forward, dW of every
//! layer, dX of every layer but the first), so criterion's `thrpt` in `elem/s` reads as
//! FLOP/s: `Gelem/s` = GFLOP/s.
//!
//! Threads: `BACKPROP_MATMUL_THREADS` (default 1) sets the threads of one matrix product,
//! as `backprop serve --matmul-threads` does: `BACKPROP_MATMUL_THREADS=2 cargo bench
//! --bench engine`. The allocator is tuned as in the server.
use std::hint::black_box;
use std::time::Duration;

use backprop::model::{ActivationSpec, HiddenSpec, InitSpec, Model, ModelSpec};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

/// W1's definition (spec, data, FLOP count), shared with the example that
/// `bench/w1_compare.sh` runs against numpy.
#[allow(dead_code)]
#[path = "../examples/w1_step.rs"]
mod w1_step;

use w1_step::{C, D, N, blobs, forward_flop, setup_process, train_step_flop, w1_spec};

/// W4: N = 128, 3072-512-256-10, with the loss and optimizer of W1.
const W4_N: usize = 128;
const W4_HIDDEN: [usize; 2] = [512, 256];

fn w4_spec(activation: ActivationSpec) -> ModelSpec {
    let hidden = W4_HIDDEN
        .iter()
        .map(|&units| HiddenSpec { units, activation })
        .collect();
    ModelSpec {
        hidden,
        // The default per-layer init (He for ReLU-like layers, Xavier otherwise), as a
        // deeper net needs; W1 keeps the numpy reference's 0.01·randn.
        init: InitSpec::Auto,
        ..w1_spec()
    }
}

fn activation_name(a: ActivationSpec) -> String {
    match a {
        ActivationSpec::Relu => "relu".into(),
        ActivationSpec::Sigmoid => "sigmoid".into(),
        ActivationSpec::Tanh => "tanh".into(),
        ActivationSpec::LeakyRelu { .. } => "leaky_relu".into(),
        ActivationSpec::Elu { .. } => "elu".into(),
        ActivationSpec::Maxout { pieces } => format!("maxout{pieces}"),
        ActivationSpec::Gelu { form } => format!("gelu_{form:?}").to_lowercase(),
    }
}

/// Short runs, so the whole file takes about 1.5 minutes.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
}

fn w1(c: &mut Criterion) {
    setup_process();
    let spec = w1_spec();
    let (x, labels) = blobs(N, D, C, 0);
    let mut model = Model::<f32>::new(spec.clone()).expect("W1 spec is valid");

    let mut g = c.benchmark_group("w1");
    g.throughput(Throughput::Elements(train_step_flop(&spec, N)));
    // Training goes on across iterations, as in the numpy reference; a step's cost does
    // not depend on the weights' values.
    g.bench_function("train_step", |b| {
        b.iter(|| {
            model
                .train_step(black_box(x.view()), &labels)
                .expect("W1 step")
        })
    });
    g.finish();

    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(forward_flop(&spec, N)));
    g.bench_function("w1_scores", |b| {
        b.iter(|| model.net().scores(black_box(x.view())).expect("W1 scores"))
    });
    g.finish();
}

fn w4(c: &mut Criterion) {
    setup_process();
    let (x, labels) = blobs(W4_N, D, C, 0);
    let mut g = c.benchmark_group("w4");
    // A step takes 15-40 ms: flat sampling fits 20 samples in the 5 s budget, where
    // criterion's default linear ramp would need 210 steps.
    g.sample_size(20).sampling_mode(SamplingMode::Flat);
    for activation in ActivationSpec::all() {
        let spec = w4_spec(activation);
        // Maxout's pieces each carry a full weight matrix, so its FLOP count is higher.
        g.throughput(Throughput::Elements(train_step_flop(&spec, W4_N)));
        let mut model = Model::<f32>::new(spec).expect("W4 spec is valid");
        g.bench_function(activation_name(activation), |b| {
            b.iter(|| {
                model
                    .train_step(black_box(x.view()), &labels)
                    .expect("W4 step")
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = w1, w4
}
criterion_main!(benches);
