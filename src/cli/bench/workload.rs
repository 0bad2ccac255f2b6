//! The workloads of `bench/README.md` as wire messages, for `backprop bench`: the W1
//! and W2 model specs and their seeded batches. The batch recipe is the one in
//! `examples/w1_step.rs` (which keeps its own copy, for the engine benches), so the server
//! here trains on the same numbers the in-process benches do.
use crate::engine::rng::Rng;
use crate::pb;

/// W1: CIFAR-sized two-layer net, one TrainStep of a batch of `N`.
pub mod w1 {
    pub const N: usize = 200;
    pub const D: usize = 3072;
    pub const H: usize = 100;
    pub const C: usize = 10;
    /// FLOP per TrainStep as bench/README.md counts them: forward of both layers (2·N·D·H +
    /// 2·N·H·C), dW of both, dX of the second only. 246.96 M.
    pub const TRAIN_STEP_FLOP: u64 = (2 * 2 * N * D * H + 3 * 2 * N * H * C) as u64;
}

/// W2: a tiny model, where the RPC machinery is most of the cost.
pub mod w2 {
    pub const N: usize = 8;
    pub const D: usize = 4;
    pub const H: usize = 16;
    pub const C: usize = 3;
    /// Parameters: W1 (D×H), b1 (H), W2 (H×C), b2 (C) = 131.
    pub const PARAMETERS: u64 = (D * H + H + H * C + C) as u64;
    /// What the parameters take as f32: 524 bytes.
    pub const PARAMETER_BYTES: u64 = PARAMETERS * 4;
}

/// W1's spec: 3072-100(ReLU)-10, SVM Δ = 1, λ = 1e-3, SGD lr = 1e-3, weights
/// `0.01·randn` (so the first loss is ≈ C − 1), f32.
pub fn w1_spec() -> pb::ModelSpec {
    pb::ModelSpec {
        input_dim: w1::D as u32,
        hidden: vec![relu(w1::H)],
        num_classes: w1::C as u32,
        loss: pb::LossKind::Svm as i32,
        svm_margin: Some(1.0),
        l2: 1e-3,
        optimizer: Some(pb::Optimizer {
            kind: pb::OptimizerKind::Sgd as i32,
            learning_rate: Some(1e-3),
            ..Default::default()
        }),
        init: Some(pb::Init {
            scheme: pb::InitScheme::Gaussian as i32,
            weight_scale: Some(1e-2),
            seed: 0,
        }),
        dtype: pb::Dtype::F32 as i32,
        ..Default::default()
    }
}

/// W2's spec: 4-16(ReLU)-3, SVM, SGD, the server's defaults otherwise (as
/// `bench/ghz/models/w2.json`).
pub fn w2_spec() -> pb::ModelSpec {
    pb::ModelSpec {
        input_dim: w2::D as u32,
        hidden: vec![relu(w2::H)],
        num_classes: w2::C as u32,
        loss: pb::LossKind::Svm as i32,
        optimizer: Some(pb::Optimizer {
            kind: pb::OptimizerKind::Sgd as i32,
            ..Default::default()
        }),
        init: Some(pb::Init::default()),
        dtype: pb::Dtype::F32 as i32,
        ..Default::default()
    }
}

fn relu(units: usize) -> pb::HiddenLayer {
    pb::HiddenLayer {
        units: units as u32,
        activation: pb::Activation::Relu as i32,
        ..Default::default()
    }
}

/// A labelled batch as it goes on the wire.
pub struct Batch {
    pub x: pb::Tensor,
    pub labels: Vec<u32>,
}

/// Seeded Gaussian blobs, one per class: class centres `~ N(0, I)`, row i has label
/// `i mod c` and is its centre plus `N(0, I)` noise. The same numbers, in the same order,
/// as `blobs` in `examples/w1_step.rs`.
pub fn blobs(n: usize, d: usize, c: usize, seed: u64) -> Batch {
    let mut rng = Rng::new(seed);
    let centres: Vec<f64> = (0..c * d).map(|_| rng.normal()).collect();
    let labels: Vec<u32> = (0..n).map(|i| (i % c) as u32).collect();
    let mut values = Vec::with_capacity(n * d);
    for &label in &labels {
        let centre = &centres[label as usize * d..(label as usize + 1) * d];
        values.extend(centre.iter().map(|m| (m + rng.normal()) as f32));
    }
    Batch {
        x: pb::Tensor {
            shape: vec![n as u32, d as u32],
            values,
            values_f64: Vec::new(),
            ..Default::default()
        },
        labels,
    }
}

/// W1's batch: 200 × 3072, seed 0.
pub fn w1_batch() -> Batch {
    blobs(w1::N, w1::D, w1::C, 0)
}

/// W2's batch: 8 × 4, seed 0.
pub fn w2_batch() -> Batch {
    blobs(w2::N, w2::D, w2::C, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(w1::TRAIN_STEP_FLOP, 246_960_000);
        assert_eq!((w2::PARAMETERS, w2::PARAMETER_BYTES), (131, 524));
        let b = w1_batch();
        assert_eq!(b.x.shape, [200, 3072]);
        assert_eq!(b.x.values.len(), 200 * 3072);
        assert_eq!(&b.labels[..11], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]);
    }

    /// Row-major blobs: the first row is centre 0 plus noise, drawn after all the centres.
    #[test]
    fn blob_order() {
        let b = blobs(3, 2, 2, 7);
        let mut rng = Rng::new(7);
        let centres: Vec<f64> = (0..4).map(|_| rng.normal()).collect();
        let first = (centres[0] + rng.normal()) as f32;
        assert_eq!(b.x.values[0], first);
        assert_eq!(b.labels, [0, 1, 0]);
    }
}
