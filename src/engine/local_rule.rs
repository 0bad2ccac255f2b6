//! How a gate's local gradient on one input combines with the upstream gradient into
//! the downstream gradient. Each gate declares its own rule (`Gate::local_rule`), so the
//! trace never decides it by the gate's name.
/// How an edge's local gradient `L` combines with the upstream gradient `G` of its gate
/// into the downstream gradient `D` sent to the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalRule {
    /// `D = L ⊙ G` (activations, add, mul, max, bias_add's matrix input).
    Elementwise,
    /// `D = G · Lᵀ` (matmul's left input X, whose local gradient is W).
    MatmulRight,
    /// `D = Lᵀ · G` (matmul's right input W, local gradient X; bias_add's bias, local
    /// gradient the column of ones `1`, so `D = 1ᵀ·G`, the row sums, as a vector).
    MatmulLeft,
    /// `D = L · G` with G a scalar (gates with a 0-d output: losses, l2, sum, add of
    /// scalars); L is then the gate's full gradient `∂out/∂input`.
    Scale,
    /// No local gradient is reported for this gate kind; the downstream still is.
    Unknown,
}

impl LocalRule {
    pub fn name(self) -> &'static str {
        match self {
            LocalRule::Elementwise => "elementwise",
            LocalRule::MatmulRight => "matmul_right",
            LocalRule::MatmulLeft => "matmul_left",
            LocalRule::Scale => "scale",
            LocalRule::Unknown => "unknown",
        }
    }
}
