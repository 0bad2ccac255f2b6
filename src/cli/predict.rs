//! `backprop predict ID --data rows.csv [--proba]` and `backprop eval ID --data test.csv`:
//! a trained model used on new rows. The rows are sent raw (the model standardizes them
//! itself when it was trained with `--standardize`); predictions and labels are the
//! model's class names when it has them. Output goes to stdout as CSV (or JSON lines); a
//! reader that closes the pipe early (`| head`) ends the command quietly.
use std::io::{BufWriter, Write};

use serde_json::json;

use super::client::{self, CONNECT_TIMEOUT, ServerArgs};
use super::csv::{self, CsvOptions, Dataset};
use super::error::CliError;
use super::train::{evaluate, tensor};
use crate::pb;
use crate::service::route::routed;

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The model (from `backprop train` or `backprop models`), or a prefix of its id.
    pub id: String,
    /// CSV rows of features (a header row is allowed), the model's input width each.
    #[arg(long, value_name = "FILE.csv")]
    pub data: std::path::PathBuf,
    /// The file has a label column too, this one (1-based): it is left out.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub label_column: Option<u32>,
    #[command(flatten)]
    pub columns: crate::cli::csv::ColumnArgs,
    /// Also print each class's softmax probability.
    #[arg(long)]
    pub proba: bool,
    /// One JSON object a row instead of CSV.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The model.
    pub id: String,
    /// Labelled CSV rows, as `backprop train` reads them (labels: the model's class names
    /// or indices).
    #[arg(long, value_name = "FILE.csv")]
    pub data: std::path::PathBuf,
    /// Which column (1-based) holds the label.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub label_column: u32,
    #[command(flatten)]
    pub columns: crate::cli::csv::ColumnArgs,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Rows per Forward call: answers stay well under the message limit.
const ROWS_PER_CALL: usize = 4096;

/// The model's spec, and the rows of `path` checked against its input width.
async fn model_and_rows(
    trainer: &mut super::checkpoint::Trainer,
    id: &str,
    path: &std::path::Path,
    label_column: Option<u32>,
    columns: &crate::cli::csv::ColumnArgs,
) -> Result<(String, pb::ModelSpec, Dataset), CliError> {
    let id = super::models::resolve(trainer, id).await?;
    let id = id.as_str();
    let spec = trainer
        .get_model(routed(pb::GetModelRequest {
            model_id: id.to_string(),
            ..Default::default()
        }))
        .await
        .map_err(CliError::rpc("GetModel"))?
        .into_inner()
        .spec
        .unwrap_or_default();
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: shown.clone(),
        source,
    })?;
    let chosen = columns.columns();
    let opts = CsvOptions {
        label_column: label_column.map(|c| c as usize - 1),
        classes: Some(spec.num_classes),
        names: Some(&spec.class_names),
        columns: chosen.as_ref(),
    };
    let data = csv::parse(&shown, &text, opts)?;
    if data.dim != spec.input_dim as usize {
        return Err(CliError::Usage(format!(
            "{shown}: {} feature columns, but model {id} takes {}{}",
            data.dim,
            spec.input_dim,
            if label_column.is_none() {
                " (if one column is a label, say which with --label-column N)"
            } else {
                ""
            }
        )));
    }
    Ok((id.to_string(), spec, data))
}

/// A class as printed: its name, or its index for a model without names.
fn class(spec: &pb::ModelSpec, c: u32) -> String {
    spec.class_names
        .get(c as usize)
        .cloned()
        .unwrap_or_else(|| c.to_string())
}

/// Ends quietly on a closed pipe: the reader has what it wanted.
fn written(r: std::io::Result<()>) -> Result<(), CliError> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::Quiet),
        Err(e) => Err(CliError::Write {
            path: "standard output".into(),
            source: e,
        }),
        Ok(()) => Ok(()),
    }
}

pub async fn predict(args: PredictArgs) -> Result<(), CliError> {
    let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
    let mut trainer = client::trainer(channel);
    let (id, spec, data) = model_and_rows(
        &mut trainer,
        &args.id,
        &args.data,
        args.label_column,
        &args.columns,
    )
    .await?;
    let wide = spec.dtype == pb::Dtype::F64 as i32;
    let classes: Vec<String> = (0..spec.num_classes).map(|c| class(&spec, c)).collect();
    let mut out = BufWriter::new(std::io::stdout().lock());
    if !args.json {
        let mut head = vec!["prediction".to_string()];
        if args.proba {
            head.extend(classes.iter().map(|c| format!("p({c})")));
        }
        written(writeln!(out, "{}", head.join(",")))?;
    }
    let rows: Vec<usize> = (0..data.rows()).collect();
    for part in rows.chunks(ROWS_PER_CALL) {
        let answer = trainer
            .forward(routed(pb::ForwardRequest {
                model_id: id.clone(),
                x: Some(tensor(&data, part, wide)),
                probabilities: args.proba,
                ..Default::default()
            }))
            .await
            .map_err(CliError::rpc("Forward"))?
            .into_inner();
        let probs = answer
            .probabilities
            .as_ref()
            .and_then(crate::pb::array::to_f64_array);
        for (i, &p) in answer.predictions.iter().enumerate() {
            let row: Vec<f64> = probs
                .as_ref()
                .map(|a| a.index_axis(ndarray::Axis(0), i).iter().copied().collect())
                .unwrap_or_default();
            let line = if args.json {
                let mut o = json!({"prediction": class(&spec, p)});
                if args.proba {
                    o["probabilities"] = json!(row);
                }
                o.to_string()
            } else {
                let mut cells = vec![csv_cell(&class(&spec, p))];
                cells.extend(row.iter().map(|v| format!("{v:.6}")));
                cells.join(",")
            };
            written(writeln!(out, "{line}"))?;
        }
    }
    written(out.flush())
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub async fn eval(args: EvalArgs) -> Result<(), CliError> {
    let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
    let mut trainer = client::trainer(channel);
    let (id, spec, data) = model_and_rows(
        &mut trainer,
        &args.id,
        &args.data,
        Some(args.label_column),
        &args.columns,
    )
    .await?;
    let wide = spec.dtype == pb::Dtype::F64 as i32;
    let rows: Vec<usize> = (0..data.rows()).collect();
    let (loss, accuracy) = evaluate(&mut trainer, &id, &data, &rows, wide).await?;
    let correct = (accuracy * rows.len() as f64).round() as u64;
    if args.json {
        println!(
            "{}",
            json!({"model_id": id, "rows": rows.len(), "accuracy": accuracy,
                   "correct": correct, "loss": loss})
        );
    } else {
        println!(
            "{}: accuracy {accuracy:.4} ({correct} of {} rows), loss {loss:.4}",
            args.data.display(),
            rows.len()
        );
    }
    Ok(())
}
