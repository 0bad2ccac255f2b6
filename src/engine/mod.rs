//! The math core: CS231n lecture 4's backpropagation on a computational graph, on
//! ndarray, knowing nothing of gRPC.
//!
//! - [`graph`]: the tape. Forward pushes nodes; backward walks them in reverse, each gate
//!   multiplying its local gradient by the upstream gradient, and adds the results into
//!   the inputs' gradients (so fan-out is right).
//! - [`backward`]: the reverse walk over a tape into a gradient store.
//! - [`fastmath`]: `exp`, `exp_m1` and `tanh` for f32 that vectorise over a slice.
//! - [`grad`]: the gradient store, apart from the values.
//! - [`local_rule`]: how a gate's local gradient meets its upstream (each gate names its own).
//! - [`ops`]: the gates, forward and backward side by side, one file each (the table in
//!   `ops` states each gate's math).
//! - [`matmul_kernel`]: the matrix products behind the matmul gate, and their threads.
//! - [`gradcheck`]: central-difference numeric gradients, the oracle for every test.
//! - [`rng`]: a seeded generator that gives the same numbers on every machine.
//! - [`scalar`]: f32 and f64, chosen per model.
//! - [`trace`]: the graph as data, node by node, with local and downstream gradients.
pub mod backward;
pub mod error;
pub mod fastmath;
pub mod grad;
pub mod gradcheck;
pub mod graph;
pub mod local_rule;
pub mod matmul_kernel;
pub mod ops;
pub mod rng;
pub mod scalar;
pub mod trace;

pub use backward::BackwardOptions;
pub use error::{EngineError, Result};
pub use grad::GradStore;
pub use graph::{Gate, Graph, NodeId};
pub use ops::activation::Activation;
pub use scalar::Scalar;
