//! The README's picture: the computational graph of a 2-layer ReLU net (2 inputs, 3 hidden
//! units, 3 classes, softmax loss, λ = 0.01) on 2 samples, traced (forward and backward)
//! and rendered as `docs/graph-example.dot` and `docs/graph-example.svg`.
//!
//! Run: `cargo run --example graph_example` (deterministic: the same files every time).
//! With Graphviz installed, `dot -Tsvg docs/graph-example.dot` draws the DOT version.
use std::path::Path;
use std::process::ExitCode;

use backprop::cli::graph as render;
use backprop::model::{
    ActivationSpec, DType, HiddenSpec, InitSpec, LossSpec, ModelSpec, Net, OptimizerSpec,
};
use ndarray::array;

fn main() -> ExitCode {
    let spec = ModelSpec {
        input_dim: 2,
        hidden: vec![HiddenSpec {
            units: 3,
            activation: ActivationSpec::Relu,
        }],
        num_classes: 3,
        bias: true,
        loss: LossSpec::Softmax,
        l2: 0.01,
        optimizer: OptimizerSpec::Sgd(backprop::model::Sgd { lr: 1e-2 }),
        init: InitSpec::Auto,
        seed: 4,
        dtype: DType::F64,
        standardize: None,
        class_names: vec![],
    };
    let x = array![[1.0, -2.0], [0.5, 1.5]];
    let labels = [0, 2];
    let result = Net::<f64>::new(spec).and_then(|net| net.trace(x.view(), &labels, true));
    let (trace, losses) = match result {
        Ok(t) => t,
        Err(e) => {
            eprintln!("graph_example: {e}");
            return ExitCode::FAILURE;
        }
    };
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for (name, text) in [
        ("graph-example.dot", render::dot(&trace)),
        ("graph-example.svg", render::svg(&trace)),
    ] {
        let path = docs.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("graph_example: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    println!(
        "data loss {:.4}, R {:.4}, {} nodes",
        losses.data.unwrap_or(f64::NAN),
        losses.reg,
        trace.nodes.len()
    );
    ExitCode::SUCCESS
}
