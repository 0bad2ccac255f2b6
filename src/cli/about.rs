//! Names and labels from the command line: `train --name/--label`, `models --name/
//! --label` (a filter), `backprop label ID KEY=VALUE… KEY-…` and `backprop rename ID
//! NAME` (UpdateModel), and how `models` and `show` print a model's metadata and final
//! metrics.
use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::client::{self, CONNECT_TIMEOUT, ServerArgs};
use super::error::CliError;
use super::models::resolve;
use crate::pb;
use crate::service::route::routed;

/// `--name` and `--label` of a new model (and of `models`, where they filter).
#[derive(clap::Args, Debug, Default)]
pub struct AboutArgs {
    /// A name for people (need not be unique); `show`, `delete` and the rest also take
    /// a name that only one model has.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// A label KEY=VALUE (repeatable), e.g. --label team=vision --label run=3.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

impl AboutArgs {
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_default()
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        self.labels.iter().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.labels.is_empty()
    }
}

#[derive(clap::Args, Debug)]
pub struct LabelArgs {
    /// The model: its id, a prefix of it, or its name.
    pub id: String,
    /// KEY=VALUE adds or changes a label, KEY- removes one.
    #[arg(required = true, value_name = "KEY=VALUE|KEY-")]
    pub changes: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct RenameArgs {
    /// The model: its id, a prefix of it, or its name.
    pub id: String,
    /// The new name; "" removes it.
    pub name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `KEY=VALUE`, split at the first `=` (the server checks what a key may hold).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// The UpdateModel that `label`'s arguments ask for.
fn label_request(id: String, changes: &[String]) -> Result<pb::UpdateModelRequest, CliError> {
    let mut request = pb::UpdateModelRequest {
        model_id: id,
        ..Default::default()
    };
    for change in changes {
        if let Some(key) = change.strip_suffix('-').filter(|k| !k.contains('=')) {
            request.remove_labels.push(key.to_string());
        } else {
            let (k, v) = parse_label(change).map_err(|e| {
                CliError::Usage(format!(
                    "{e}: give KEY=VALUE to set a label, KEY- to remove one"
                ))
            })?;
            request.set_labels.insert(k, v);
        }
    }
    Ok(request)
}

pub async fn label(args: LabelArgs) -> Result<(), CliError> {
    let mut trainer = client::trainer(client::connect(&args.server, CONNECT_TIMEOUT).await?);
    let id = resolve(&mut trainer, &args.id).await?;
    let request = label_request(id.clone(), &args.changes)?;
    let about = trainer
        .update_model(routed(request))
        .await
        .map_err(CliError::rpc("UpdateModel"))?
        .into_inner();
    print_changed(&id, &about, args.json);
    Ok(())
}

pub async fn rename(args: RenameArgs) -> Result<(), CliError> {
    let mut trainer = client::trainer(client::connect(&args.server, CONNECT_TIMEOUT).await?);
    let id = resolve(&mut trainer, &args.id).await?;
    let about = trainer
        .update_model(routed(pb::UpdateModelRequest {
            model_id: id.clone(),
            name: Some(args.name),
            ..Default::default()
        }))
        .await
        .map_err(CliError::rpc("UpdateModel"))?
        .into_inner();
    print_changed(&id, &about, args.json);
    Ok(())
}

fn print_changed(id: &str, about: &pb::ModelMetadata, as_json: bool) {
    if as_json {
        let mut out = metadata_json(Some(about));
        out["model_id"] = json!(id);
        println!("{out}");
        return;
    }
    let name = if about.name.is_empty() {
        "no name".to_string()
    } else {
        format!("name {:?}", about.name)
    };
    println!("{id}: {name}, labels {}", labels_text(about));
}

/// Labels as `k=v,k2=v2` in key order ("-" for none).
pub fn labels_text(about: &pb::ModelMetadata) -> String {
    if about.labels.is_empty() {
        return "-".into();
    }
    let mut pairs: Vec<_> = about.labels.iter().collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// How long ago a Unix time was, in the largest whole unit ("-" for an unknown time).
pub fn age(unix_seconds: f64) -> String {
    if unix_seconds <= 0.0 {
        return "-".into();
    }
    let ago = (crate::session::history::now() - unix_seconds).max(0.0);
    duration(ago)
}

/// A duration in its largest whole unit: 42s, 7m, 3h, 12d.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A metric as printed in tables: four digits, "-" when absent (NaN on the wire).
pub fn metric(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.4}"),
        _ => "-".into(),
    }
}

/// The final metrics a model summary carries: the latest batch's data loss and accuracy
/// and the latest epoch's validation accuracy.
pub fn final_metrics(
    last_step: Option<&pb::HistoryStep>,
    last_epoch: Option<&pb::HistoryEpoch>,
) -> [String; 3] {
    [
        metric(last_step.map(|s| s.data_loss)),
        metric(last_step.map(|s| s.accuracy)),
        metric(last_epoch.and_then(|e| e.validation_accuracy)),
    ]
}

/// A JSON number, or null for NaN (JSON has no NaN).
fn number_or_null(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

/// The metadata as JSON for `--json` outputs.
pub fn metadata_json(about: Option<&pb::ModelMetadata>) -> Value {
    let about = about.cloned().unwrap_or_default();
    let labels: serde_json::Map<String, Value> = about
        .labels
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({
        "name": about.name,
        "labels": labels,
        "created_time": about.created_time,
        "dataset_id": about.dataset_id,
    })
}

/// The latest step and epoch as JSON (null when there is none).
pub fn last_json(
    last_step: Option<&pb::HistoryStep>,
    last_epoch: Option<&pb::HistoryEpoch>,
) -> (Value, Value) {
    let step = last_step.map_or(Value::Null, |s| {
        json!({
            "step": s.step,
            "data_loss": number_or_null(s.data_loss),
            "reg_loss": number_or_null(s.reg_loss),
            "accuracy": number_or_null(s.accuracy),
            "learning_rate": s.learning_rate,
            "time": s.time,
        })
    });
    let epoch = last_epoch.map_or(Value::Null, |e| {
        json!({
            "step": e.step,
            "epoch": e.epoch,
            "mean_loss": number_or_null(e.mean_loss),
            "train_accuracy": number_or_null(e.train_accuracy),
            "validation_loss": e.validation_loss,
            "validation_accuracy": e.validation_accuracy,
            "time": e.time,
        })
    });
    (step, epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_arguments_set_and_remove() {
        let r = label_request(
            "m".into(),
            &[
                "team=ml".into(),
                "run-".into(),
                "eq=a=b".into(),
                "dash=x-".into(),
            ],
        )
        .unwrap();
        assert_eq!(r.remove_labels, vec!["run".to_string()]);
        assert_eq!(r.set_labels.get("team").map(String::as_str), Some("ml"));
        assert_eq!(r.set_labels.get("eq").map(String::as_str), Some("a=b"));
        assert_eq!(r.set_labels.get("dash").map(String::as_str), Some("x-"));
        assert!(label_request("m".into(), &["bare".into()]).is_err());
        assert!(parse_label("=v").is_err());
    }

    #[test]
    fn durations_take_their_largest_unit() {
        assert_eq!(duration(59.9), "59s");
        assert_eq!(duration(60.0), "1m");
        assert_eq!(duration(7199.0), "1h");
        assert_eq!(duration(86_400.0 * 3.5), "3d");
        assert_eq!(age(0.0), "-");
        assert_eq!(metric(Some(f64::NAN)), "-");
        assert_eq!(metric(Some(0.96512)), "0.9651");
    }
}
