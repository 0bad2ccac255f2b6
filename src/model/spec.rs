//! A model's full description, every default already filled in, and its validation.
//! The service turns a wire spec (where unset means "default") into this; the engine
//! never guesses.
use serde::{Deserialize, Serialize};

use super::check::{non_negative, positive};
use super::optim::OptimizerSpec;
use crate::engine::error::{EngineError, Result};
use crate::engine::ops::gelu::GeluForm;
use crate::engine::ops::{elu, leaky_relu};

/// The nonlinearity of a hidden layer, with its options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActivationSpec {
    Relu,
    Sigmoid,
    Tanh,
    /// `max(slope·x, x)`, 0 ≤ slope < 1.
    LeakyRelu {
        slope: f64,
    },
    /// `x` for x ≥ 0, `alpha·(eˣ − 1)` below; alpha > 0.
    Elu {
        alpha: f64,
    },
    /// `max_p(x·W_p + b_p)` over `pieces` ≥ 2 affine pieces.
    Maxout {
        pieces: usize,
    },
    /// `x·Φ(x)`, exactly (erf) or by the tanh approximation.
    Gelu {
        #[serde(default)]
        form: GeluForm,
    },
}

impl ActivationSpec {
    pub fn leaky_relu() -> Self {
        ActivationSpec::LeakyRelu {
            slope: leaky_relu::DEFAULT_SLOPE,
        }
    }
    pub fn elu() -> Self {
        ActivationSpec::Elu {
            alpha: elu::DEFAULT_ALPHA,
        }
    }
    pub fn maxout() -> Self {
        ActivationSpec::Maxout { pieces: 2 }
    }
    pub fn gelu() -> Self {
        ActivationSpec::Gelu {
            form: GeluForm::default(),
        }
    }
    /// Every activation, each with its default options.
    pub fn all() -> [ActivationSpec; 7] {
        [
            ActivationSpec::Sigmoid,
            ActivationSpec::Tanh,
            ActivationSpec::Relu,
            ActivationSpec::leaky_relu(),
            ActivationSpec::maxout(),
            ActivationSpec::elu(),
            ActivationSpec::gelu(),
        ]
    }
    /// ReLU-like activations keep about half the variance, so they take He init.
    fn relu_like(&self) -> bool {
        !matches!(self, ActivationSpec::Sigmoid | ActivationSpec::Tanh)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HiddenSpec {
    pub units: usize,
    pub activation: ActivationSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LossSpec {
    /// Multiclass SVM with margin Δ > 0 (1.0 by default).
    Svm {
        margin: f64,
    },
    Softmax,
}

/// How weights are drawn; biases always start at 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InitSpec {
    /// Per layer: He for ReLU-like layers (ReLU, leaky ReLU, ELU, maxout), Xavier for
    /// sigmoid and tanh layers and for the output layer.
    Auto,
    /// `N(0, scale²)`, CS231n's `weight_scale * randn`.
    Gaussian { scale: f64 },
    /// `N(0, 2/fan_in)`.
    He,
    /// Glorot normal, `N(0, 2/(fan_in + fan_out))`.
    Xavier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    F32,
    F64,
}

/// An input standardization kept with the model (CS231n's preprocessing: zero mean,
/// unit variance per feature): column j of every batch becomes `(x_j − mean_j) / std_j`
/// before the first layer, by the `standardize` gate. Stored in the spec, so a model
/// trained on standardized features takes raw ones from any caller, and checkpoints
/// carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardization {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Standardization {
    /// One finite mean and one finite, positive standard deviation per input column.
    pub fn validate(&self, input_dim: usize) -> Result<()> {
        if input_dim > MAX_STANDARDIZED_DIM {
            return Err(EngineError::spec(
                "spec.standardize",
                format!("at most {MAX_STANDARDIZED_DIM} input columns, the model has {input_dim}"),
            ));
        }
        for (field, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != input_dim {
                return Err(EngineError::spec(
                    format!("spec.standardize.{field}"),
                    format!("{} values for {input_dim} input columns", v.len()),
                ));
            }
        }
        if let Some(j) = self.mean.iter().position(|m| !m.is_finite()) {
            return Err(EngineError::spec(
                format!("spec.standardize.mean[{j}]"),
                format!("must be finite, got {}", self.mean[j]),
            ));
        }
        if let Some(j) = self.std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(EngineError::spec(
                format!("spec.standardize.std[{j}]"),
                format!(
                    "must be finite and > 0, got {} (a constant column: use 1)",
                    self.std[j]
                ),
            ));
        }
        Ok(())
    }
}

/// The widest input a standardization may cover (its two vectors go in the spec's JSON
/// of every checkpoint: 2 × 65,536 numbers are about 3 MB).
pub const MAX_STANDARDIZED_DIM: usize = 65_536;
/// The longest class name, in bytes.
pub const MAX_CLASS_NAME_BYTES: usize = 128;
/// The most classes that may have names (every name goes in each checkpoint's spec).
pub const MAX_NAMED_CLASSES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub input_dim: usize,
    pub hidden: Vec<HiddenSpec>,
    pub num_classes: usize,
    pub bias: bool,
    pub loss: LossSpec,
    /// λ in `R = λ·Σ W²`.
    pub l2: f64,
    pub optimizer: OptimizerSpec,
    pub init: InitSpec,
    pub seed: u64,
    pub dtype: DType,
    /// Applied to every batch before the first layer; absent from the JSON of a spec
    /// without one (so its checkpoints are what they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardize: Option<Standardization>,
    /// A name per class (label i is `class_names[i]`), or none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
}

impl ModelSpec {
    /// A model with the documented defaults: biases on, SVM (Δ = 1), λ = 0, SGD, auto init,
    /// seed 0, f32.
    pub fn new(input_dim: usize, hidden: Vec<HiddenSpec>, num_classes: usize) -> Self {
        ModelSpec {
            input_dim,
            hidden,
            num_classes,
            bias: true,
            loss: LossSpec::Svm { margin: 1.0 },
            l2: 0.0,
            optimizer: OptimizerSpec::sgd(),
            init: InitSpec::Auto,
            seed: 0,
            dtype: DType::F32,
            standardize: None,
            class_names: Vec::new(),
        }
    }

    /// Checks every value; the error names the field (wire names, e.g. `spec.hidden[1].units`).
    pub fn validate(&self) -> Result<()> {
        if self.input_dim == 0 {
            return Err(EngineError::spec("spec.input_dim", "must be at least 1"));
        }
        if self.num_classes < 2 {
            return Err(EngineError::spec("spec.num_classes", "must be at least 2"));
        }
        for (i, h) in self.hidden.iter().enumerate() {
            let f = |name: &str| format!("spec.hidden[{i}].{name}");
            if h.units == 0 {
                return Err(EngineError::spec(f("units"), "must be at least 1"));
            }
            match h.activation {
                ActivationSpec::LeakyRelu { slope } if !(0.0..1.0).contains(&slope) => {
                    return Err(EngineError::spec(
                        f("leaky_slope"),
                        format!("must be in [0, 1), got {slope}"),
                    ));
                }
                ActivationSpec::Elu { alpha } if !(alpha > 0.0 && alpha.is_finite()) => {
                    return Err(EngineError::spec(
                        f("elu_alpha"),
                        format!("must be finite and > 0, got {alpha}"),
                    ));
                }
                ActivationSpec::Maxout { pieces } if !(2..=MAX_PIECES).contains(&pieces) => {
                    return Err(EngineError::spec(
                        f("maxout_pieces"),
                        format!("must be in [2, {MAX_PIECES}], got {pieces}"),
                    ));
                }
                _ => {}
            }
        }
        if let LossSpec::Svm { margin } = self.loss {
            positive("spec.svm_margin", margin)?;
        }
        non_negative("spec.l2", self.l2)?;
        self.optimizer.validate()?;
        if let InitSpec::Gaussian { scale } = self.init {
            positive("spec.init.weight_scale", scale)?;
        }
        self.parameter_count()
            .ok_or_else(|| EngineError::spec("spec", "the parameter count overflows"))?;
        if let Some(st) = &self.standardize {
            st.validate(self.input_dim)?;
        }
        self.validate_class_names()
    }

    fn validate_class_names(&self) -> Result<()> {
        let names = &self.class_names;
        if names.is_empty() {
            return Ok(());
        }
        if names.len() > MAX_NAMED_CLASSES {
            return Err(EngineError::spec(
                "spec.class_names",
                format!(
                    "at most {MAX_NAMED_CLASSES} classes may have names, got {}",
                    names.len()
                ),
            ));
        }
        if names.len() != self.num_classes {
            return Err(EngineError::spec(
                "spec.class_names",
                format!(
                    "{} names for {} classes: give one per class, or none",
                    names.len(),
                    self.num_classes
                ),
            ));
        }
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() || n.len() > MAX_CLASS_NAME_BYTES {
                return Err(EngineError::spec(
                    format!("spec.class_names[{i}]"),
                    format!("must be 1 to {MAX_CLASS_NAME_BYTES} bytes, got {}", n.len()),
                ));
            }
            if let Some(j) = names[..i].iter().position(|m| m == n) {
                return Err(EngineError::spec(
                    format!("spec.class_names[{i}]"),
                    format!("{n:?} is also class {j}'s name"),
                ));
            }
        }
        Ok(())
    }

    /// Every parameter, in order.
    pub fn parameter_shapes(&self) -> Vec<ParamShape> {
        let mut out = Vec::new();
        let mut fan_in = self.input_dim;
        let layers = self
            .hidden
            .iter()
            .map(|h| (h.units, Some(h.activation)))
            .chain(std::iter::once((self.num_classes, None)));
        for (i, (units, act)) in layers.enumerate() {
            let mut push = |prefix: String| {
                out.push(ParamShape {
                    name: format!("{prefix}.weight"),
                    shape: vec![fan_in, units],
                    is_weight: true,
                    layer: i,
                });
                if self.bias {
                    out.push(ParamShape {
                        name: format!("{prefix}.bias"),
                        shape: vec![units],
                        is_weight: false,
                        layer: i,
                    });
                }
            };
            match act {
                Some(ActivationSpec::Maxout { pieces }) => {
                    (0..pieces).for_each(|p| push(format!("layers.{i}.pieces.{p}")));
                }
                _ => push(format!("layers.{i}")),
            }
            fan_in = units;
        }
        out
    }

    /// Bytes a model of this spec holds between calls: parameters plus one copy of them
    /// per optimizer state slot, in the spec's dtype. `None` on overflow.
    pub fn state_bytes(&self) -> Option<u64> {
        let scalar = match self.dtype {
            DType::F32 => 4,
            DType::F64 => 8,
        };
        let copies = 1 + self.optimizer.slots().len() as u64;
        self.parameter_count()?.checked_mul(scalar * copies)
    }

    /// The number of scalars in all parameters, or `None` if it overflows.
    pub fn parameter_count(&self) -> Option<u64> {
        let mut fan_in = self.input_dim as u64;
        let mut total = 0u64;
        let layers = self
            .hidden
            .iter()
            .map(|h| (h.units as u64, h.activation))
            .chain(std::iter::once((
                self.num_classes as u64,
                ActivationSpec::Relu,
            )));
        for (units, act) in layers {
            let pieces = match act {
                ActivationSpec::Maxout { pieces } => pieces as u64,
                _ => 1,
            };
            let per_piece =
                fan_in
                    .checked_mul(units)?
                    .checked_add(if self.bias { units } else { 0 })?;
            total = total.checked_add(per_piece.checked_mul(pieces)?)?;
            fan_in = units;
        }
        Some(total)
    }

    /// The init scheme of layer `i` (the output layer is `hidden.len()`).
    pub(crate) fn layer_init(&self, i: usize) -> InitSpec {
        match self.init {
            InitSpec::Auto => match self.hidden.get(i) {
                Some(h) if h.activation.relu_like() => InitSpec::He,
                _ => InitSpec::Xavier,
            },
            other => other,
        }
    }
}

/// A parameter's place in the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamShape {
    /// `layers.{i}.weight`, `layers.{i}.bias`, or `layers.{i}.pieces.{p}.…` for maxout.
    pub name: String,
    /// `[fan_in, fan_out]` for a weight, `[fan_out]` for a bias.
    pub shape: Vec<usize>,
    /// Weights are regularized; biases are not.
    pub is_weight: bool,
    /// The layer it belongs to (the output layer is `hidden.len()`).
    pub layer: usize,
}

/// Dimensions beyond this are absurd for a fully connected net, whatever the limits
/// (a model's input or layer width, a dataset's row).
pub const MAX_DIM: usize = 1 << 24;

/// The most maxout pieces a layer may have (each piece is a full weight matrix).
pub const MAX_PIECES: usize = 16;

/// The most hidden layers a spec may have: beyond this a fully connected net is absurd,
/// whatever the server's limits (CreateModel and ImportModel refuse more, a checkpoint
/// before its spec is even decoded).
pub const MAX_HIDDEN_LAYERS: usize = 128;
