//! A model spec in words: the short names the `train` flags use (`relu`, `softmax`, `adam`,
//! `f32`), a one-line layer chain for tables, and a JSON object for `--json`.
use serde_json::{Value, json};

use crate::model::OptimizerSpec;
use crate::pb;

pub fn activation(a: i32) -> &'static str {
    use pb::Activation as A;
    match A::try_from(a) {
        Ok(A::Unspecified | A::Relu) => "relu",
        Ok(A::Sigmoid) => "sigmoid",
        Ok(A::Tanh) => "tanh",
        Ok(A::LeakyRelu) => "leaky-relu",
        Ok(A::Elu) => "elu",
        Ok(A::Maxout) => "maxout",
        Ok(A::Gelu) => "gelu",
        Err(_) => "unknown",
    }
}

pub fn loss(spec: &pb::ModelSpec) -> &'static str {
    match pb::LossKind::try_from(spec.loss) {
        Ok(pb::LossKind::Unspecified | pb::LossKind::Svm) => "svm",
        Ok(pb::LossKind::Softmax) => "softmax",
        Err(_) => "unknown",
    }
}

pub fn dtype(spec: &pb::ModelSpec) -> &'static str {
    match pb::Dtype::try_from(spec.dtype) {
        Ok(pb::Dtype::Unspecified | pb::Dtype::F32) => "f32",
        Ok(pb::Dtype::F64) => "f64",
        Err(_) => "unknown",
    }
}

/// The model's name for an optimizer kind: the proto value's suffix
/// (`OPTIMIZER_KIND_ADAMW` → `adamw`), found among the model's rules, so a new rule needs
/// no line here (`service::convert`'s tests pin the two spellings together).
pub fn optimizer_kind(o: &pb::Optimizer) -> &'static str {
    use pb::OptimizerKind as K;
    match K::try_from(o.kind) {
        Ok(K::Unspecified) => "sgd",
        Ok(k) => k
            .as_str_name()
            .strip_prefix(OPTIMIZER_PREFIX)
            .and_then(|suffix| optimizer_names().find(|name| name.eq_ignore_ascii_case(suffix)))
            .unwrap_or("unknown"),
        Err(_) => "unknown",
    }
}

const OPTIMIZER_PREFIX: &str = "OPTIMIZER_KIND_";

/// Every optimizer the model has, by name (`sgd`, `momentum`, …).
fn optimizer_names() -> impl Iterator<Item = &'static str> {
    OptimizerSpec::all().into_iter().map(|o| o.kind_name())
}

/// The proto kind of an optimizer name (`adamw` → `OPTIMIZER_KIND_ADAMW`).
pub fn optimizer_wire(name: &str) -> Option<pb::OptimizerKind> {
    pb::OptimizerKind::from_str_name(&format!("{OPTIMIZER_PREFIX}{}", name.to_ascii_uppercase()))
}

/// `--optimizer NAME`: the choices are the model's rule names.
pub fn optimizer_choices() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(optimizer_names())
}

fn init_scheme(i: &pb::Init) -> &'static str {
    use pb::InitScheme as S;
    match S::try_from(i.scheme) {
        Ok(S::Unspecified) => "default",
        Ok(S::Gaussian) => "gaussian",
        Ok(S::He) => "he",
        Ok(S::Xavier) => "xavier",
        Err(_) => "unknown",
    }
}

fn hidden_layer(h: &pb::HiddenLayer) -> String {
    let act = activation(h.activation);
    match (act, h.leaky_slope, h.elu_alpha, h.maxout_pieces) {
        ("leaky-relu", Some(a), _, _) => format!("{} leaky-relu(α={a})", h.units),
        ("elu", _, Some(a), _) => format!("{} elu(α={a})", h.units),
        ("maxout", _, _, Some(k)) => format!("{} maxout(k={k})", h.units),
        ("gelu", ..) if h.gelu_approximate == Some(pb::GeluApproximate::Tanh as i32) => {
            format!("{} gelu(tanh)", h.units)
        }
        _ => format!("{} {act}", h.units),
    }
}

/// `4 → 64 relu → 32 relu → 3`: input, hidden layers, classes.
pub fn layers(spec: &pb::ModelSpec) -> String {
    std::iter::once(spec.input_dim.to_string())
        .chain(spec.hidden.iter().map(hidden_layer))
        .chain(std::iter::once(spec.num_classes.to_string()))
        .collect::<Vec<_>>()
        .join(" → ")
}

/// `adam lr 0.001 β1 0.9 β2 0.999 ε 1e-8`: the kind and whichever settings are set.
pub fn optimizer(spec: &pb::ModelSpec) -> String {
    let Some(o) = &spec.optimizer else {
        return "sgd".into();
    };
    let mut s = optimizer_kind(o).to_string();
    let settings = [
        ("lr", o.learning_rate),
        ("μ", o.momentum),
        ("ρ", o.decay_rate),
        ("β1", o.beta1),
        ("β2", o.beta2),
        ("ε", o.epsilon),
        ("weight-decay", o.weight_decay),
    ];
    for (name, value) in settings {
        if let Some(v) = value {
            s.push_str(&format!(" {name} {}", number(v)));
        }
    }
    if o.nesterov {
        s.push_str(" nesterov");
    }
    s
}

/// A setting as people write it: `0.001`, `0.9`, but `1e-8` rather than `0.00000001`.
pub fn number(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e6) {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

pub fn init(spec: &pb::ModelSpec) -> String {
    let i = spec.init.unwrap_or_default();
    match i.weight_scale {
        Some(w) => format!("{} (scale {w}), seed {}", init_scheme(&i), i.seed),
        None => format!("{}, seed {}", init_scheme(&i), i.seed),
    }
}

pub fn spec_json(spec: &pb::ModelSpec) -> Value {
    let o = spec.optimizer.unwrap_or_default();
    let i = spec.init.unwrap_or_default();
    json!({
        "input_dim": spec.input_dim,
        "hidden": spec.hidden.iter().map(|h| json!({
            "units": h.units,
            "activation": activation(h.activation),
            "leaky_slope": h.leaky_slope,
            "elu_alpha": h.elu_alpha,
            "maxout_pieces": h.maxout_pieces,
            "gelu_approximate": h.gelu_approximate.map(|g| match pb::GeluApproximate::try_from(g) {
                Ok(pb::GeluApproximate::Tanh) => "tanh",
                Ok(_) => "none",
                Err(_) => "unknown",
            }),
        })).collect::<Vec<_>>(),
        "num_classes": spec.num_classes,
        "bias": !spec.no_bias,
        "loss": loss(spec),
        "svm_margin": spec.svm_margin,
        "l2": spec.l2,
        "optimizer": {
            "kind": optimizer_kind(&o),
            "learning_rate": o.learning_rate,
            "momentum": o.momentum,
            "nesterov": o.nesterov,
            "decay_rate": o.decay_rate,
            "beta1": o.beta1,
            "beta2": o.beta2,
            "epsilon": o.epsilon,
            "weight_decay": o.weight_decay,
        },
        "init": {
            "scheme": init_scheme(&i),
            "weight_scale": i.weight_scale,
            "seed": i.seed,
        },
        "dtype": dtype(spec),
        "standardize": spec.standardize.as_ref().map(|st| json!({"mean": st.mean, "std": st.std})),
        "class_names": spec.class_names,
    })
}

/// The input's preprocessing in words: what the model does to a batch before its first
/// layer.
pub fn input(spec: &pb::ModelSpec) -> String {
    match &spec.standardize {
        Some(st) => format!(
            "standardized by the model ((x − mean) / std per feature, {} features)",
            st.mean.len()
        ),
        None => "as sent".into(),
    }
}

/// Rows of cells as a left-aligned text table, columns two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let pad = w - cell.chars().count();
                s.push_str(cell);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_chain() {
        let spec = pb::ModelSpec {
            input_dim: 4,
            hidden: vec![
                pb::HiddenLayer {
                    units: 8,
                    activation: pb::Activation::Maxout as i32,
                    maxout_pieces: Some(2),
                    ..Default::default()
                },
                pb::HiddenLayer {
                    units: 5,
                    ..Default::default()
                },
            ],
            num_classes: 3,
            ..Default::default()
        };
        assert_eq!(layers(&spec), "4 → 8 maxout(k=2) → 5 relu → 3");
        assert_eq!(loss(&spec), "svm");
        assert_eq!(optimizer(&spec), "sgd");
        assert_eq!(number(1e-8), "1e-8");
        assert_eq!(number(0.001), "0.001");
    }

    #[test]
    fn every_optimizer_name_has_a_proto_kind_and_back() {
        let names: Vec<_> = optimizer_names().collect();
        assert!(names.contains(&"rmsprop"), "{names:?}");
        for name in names {
            let kind = optimizer_wire(name).unwrap_or_else(|| panic!("{name}"));
            let o = pb::Optimizer {
                kind: kind as i32,
                ..Default::default()
            };
            assert_eq!(optimizer_kind(&o), name);
        }
        assert_eq!(optimizer_kind(&pb::Optimizer::default()), "sgd");
        let unknown = pb::Optimizer {
            kind: 999,
            ..Default::default()
        };
        assert_eq!(optimizer_kind(&unknown), "unknown");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1\n");
    }
}
