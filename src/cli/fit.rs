//! `backprop upload`, `datasets`, `fit` and `watch`: datasets held by the server and fits
//! on them, for people (a progress bar fed by the fit's events) or scripts (`--json`).
//! `backprop train` uses the same upload and the same event loop.
use serde_json::json;
use tokio_stream::StreamExt;

use super::client::{self, CONNECT_TIMEOUT, Connection, ServerArgs};
use super::csv::{self, CsvOptions, Dataset};
use super::error::CliError;
use super::train::progress::{Progress, Snapshot};
use crate::pb;
use crate::pb::dataset::{DEFAULT_CHUNK_BYTES, Rows, upload_chunks};
use crate::pb::trainer_client::TrainerClient;
use crate::service::route::{routed, routed_to};

type Trainer = TrainerClient<Connection>;

#[derive(clap::Args, Debug)]
pub struct UploadArgs {
    /// CSV file: a label column and numeric feature columns (as `backprop train` reads).
    #[arg(long, value_name = "FILE.csv")]
    pub data: std::path::PathBuf,
    /// Which column (1-based) holds the label.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub label_column: u32,
    #[command(flatten)]
    pub columns: crate::cli::csv::ColumnArgs,
    /// Keep the values as f64 on the server (default f32).
    #[arg(long)]
    pub f64: bool,
    /// Behind a proxy in front of several replicas: put the dataset on the replica of
    /// this model (an id) or on this replica (a name), where a fit of the model can
    /// read it. Without it any replica takes it.
    #[arg(long = "for", value_name = "MODEL_ID|REPLICA")]
    pub for_model: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct DatasetsArgs {
    /// Delete this dataset instead of listing.
    #[arg(long, value_name = "DATASET_ID")]
    pub delete: Option<String>,
    /// Behind a proxy in front of several replicas: list this replica's datasets (each
    /// replica lists its own).
    #[arg(long, value_name = "REPLICA")]
    pub replica: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct FitArgs {
    /// The model to train.
    pub id: String,
    /// The training dataset (from `backprop upload` or `backprop datasets`).
    #[arg(long, value_name = "DATASET_ID")]
    pub dataset: String,
    /// A validation dataset of its own.
    #[arg(long, value_name = "DATASET_ID")]
    pub validation: Option<String>,
    /// Or this fraction of the training rows, held out by the fit's seeded split.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub validation_fraction: f64,
    #[arg(long, default_value_t = 10)]
    pub epochs: u32,
    /// Stop after this many steps (0 = no bound).
    #[arg(long, default_value_t = 0)]
    pub max_steps: u64,
    #[arg(long, default_value_t = 64)]
    pub batch_size: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CS231n's per-epoch learning-rate decay (e.g. 0.95); default constant.
    #[arg(long, value_name = "FACTOR")]
    pub lr_decay: Option<f64>,
    /// Stop when the validation loss has not improved for this many epochs (and go back
    /// to the best epoch).
    #[arg(long, value_name = "EPOCHS")]
    pub patience: Option<u32>,
    /// Keep training on the server after this command ends (follow with `backprop watch`).
    #[arg(long)]
    pub detach: bool,
    /// Print each event as one JSON line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// The model whose fit to follow (running or last).
    pub id: String,
    /// Replay from this event on.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Uploads `rows` of `data` (f32 unless `wide`) as one dataset named `name`, routed to
/// `to` (a model id or a replica name, see `service::route`; empty: any replica).
pub async fn upload_rows(
    trainer: &mut Trainer,
    to: &str,
    data: &Dataset,
    rows: &[usize],
    name: &str,
    wide: bool,
) -> Result<pb::DatasetInfo, CliError> {
    let labels: Vec<u32> = rows.iter().map(|&r| data.labels[r]).collect();
    let chunks = if wide {
        let x: Vec<f64> = rows.iter().flat_map(|&r| data.row(r).to_vec()).collect();
        upload_chunks(Rows::F64(&x), data.dim, &labels, name, DEFAULT_CHUNK_BYTES)
    } else {
        let x: Vec<f32> = rows
            .iter()
            .flat_map(|&r| data.row(r).iter().map(|&v| v as f32))
            .collect();
        upload_chunks(Rows::F32(&x), data.dim, &labels, name, DEFAULT_CHUNK_BYTES)
    };
    Ok(trainer
        .upload_dataset(routed_to(tokio_stream::iter(chunks), to))
        .await
        .map_err(CliError::rpc("UploadDataset"))?
        .into_inner())
}

/// Reads a fit's events to its end, drawing progress (or printing JSON lines); returns
/// the finish.
pub async fn follow(
    mut events: tonic::Streaming<pb::FitEvent>,
    json: bool,
) -> Result<pb::FitFinished, CliError> {
    use pb::fit_event::Event;
    let mut progress: Option<Progress> = None;
    let mut per_epoch = 1u64;
    let mut start = 0u64;
    while let Some(e) = events.next().await {
        let e = e.map_err(CliError::rpc("Fit"))?;
        if json {
            println!("{}", event_json(&e));
        }
        match e.event {
            Some(Event::Started(s)) => {
                per_epoch = s.steps_per_epoch.max(1);
                start = s.start_step;
                let epochs = s.planned_steps.div_ceil(per_epoch) as usize;
                if !json {
                    println!(
                        "fit: {} training rows, {} validation rows, {} steps per epoch, {} steps planned",
                        s.train_rows, s.validation_rows, s.steps_per_epoch, s.planned_steps
                    );
                    progress = Some(Progress::new(epochs, s.planned_steps));
                }
            }
            Some(Event::Progress(p)) => {
                if let Some(bar) = progress.as_mut() {
                    bar.step(Snapshot {
                        epoch: p.epoch as usize + 1,
                        step: p.step - start,
                        loss: p.losses.and_then(|l| l.total_loss).unwrap_or(f64::NAN),
                        accuracy: p.accuracy,
                    });
                }
            }
            Some(Event::EpochEnd(x)) => {
                if let Some(bar) = progress.as_mut() {
                    bar.epoch_end(Snapshot {
                        epoch: x.epoch as usize + 1,
                        step: x.step - start,
                        loss: x.mean_loss,
                        accuracy: x.train_accuracy,
                    });
                }
            }
            Some(Event::Finished(f)) => {
                if let Some(mut bar) = progress.take() {
                    bar.finish();
                }
                return Ok(f);
            }
            None => {}
        }
    }
    let _ = per_epoch;
    Err(CliError::Usage(
        "the fit's event stream ended before its finish".into(),
    ))
}

fn event_json(e: &pb::FitEvent) -> serde_json::Value {
    use pb::fit_event::Event;
    match &e.event {
        Some(Event::Started(s)) => json!({"index": e.index, "event": "started",
            "start_step": s.start_step, "train_rows": s.train_rows,
            "validation_rows": s.validation_rows, "steps_per_epoch": s.steps_per_epoch,
            "planned_steps": s.planned_steps}),
        Some(Event::Progress(p)) => json!({"index": e.index, "event": "progress",
            "step": p.step, "epoch": p.epoch,
            "loss": p.losses.and_then(|l| l.total_loss), "accuracy": p.accuracy,
            "learning_rate": p.learning_rate, "steps_per_second": p.steps_per_second}),
        Some(Event::EpochEnd(x)) => json!({"index": e.index, "event": "epoch_end",
            "epoch": x.epoch, "step": x.step, "mean_loss": x.mean_loss,
            "train_accuracy": x.train_accuracy, "validation_loss": x.validation_loss,
            "validation_accuracy": x.validation_accuracy, "improved": x.improved}),
        Some(Event::Finished(f)) => json!({"index": e.index, "event": "finished",
            "reason": end_name(f.reason), "step": f.step, "steps": f.steps, "epochs": f.epochs,
            "best_step": f.best_step, "error": f.error.as_ref().map(|x| x.message.clone())}),
        None => json!({"index": e.index}),
    }
}

/// `FIT_END_EARLY_STOPPED` → `early_stopped`.
pub fn end_name(reason: i32) -> String {
    pb::FitEnd::try_from(reason)
        .map(|r| {
            r.as_str_name()
                .trim_start_matches("FIT_END_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| reason.to_string())
}

/// A finish as the result of the command: an error for a failed fit.
pub fn outcome(f: &pb::FitFinished) -> Result<(), CliError> {
    match &f.error {
        Some(e) if f.reason == pb::FitEnd::Failed as i32 => Err(CliError::Rpc {
            call: "Fit",
            code: tonic::Code::from(e.code),
            message: e.message.clone(),
        }),
        _ => Ok(()),
    }
}

pub async fn upload(args: UploadArgs) -> Result<(), CliError> {
    let path = args.data.display().to_string();
    let text = std::fs::read_to_string(&args.data).map_err(|source| CliError::Read {
        path: path.clone(),
        source,
    })?;
    let columns = args.columns.columns();
    let opts = CsvOptions {
        label_column: Some(args.label_column as usize - 1),
        names: None,
        columns: columns.as_ref(),
        classes: None,
    };
    let data = csv::parse(&path, &text, opts)?;
    let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
    let mut trainer = client::trainer(channel);
    let rows: Vec<usize> = (0..data.rows()).collect();
    let to = args.for_model.as_deref().unwrap_or("");
    let info = upload_rows(&mut trainer, to, &data, &rows, &path, args.f64).await?;
    if args.json {
        println!("{}", info_json(&info));
    } else {
        println!(
            "dataset {}: {} rows × {} values, labels below {}, {} bytes on the server",
            info.dataset_id, info.rows, info.dim, info.label_classes, info.bytes
        );
    }
    Ok(())
}

fn info_json(d: &pb::DatasetInfo) -> serde_json::Value {
    json!({"dataset_id": d.dataset_id, "name": d.name, "rows": d.rows, "dim": d.dim,
        "dtype": if d.dtype == pb::Dtype::F64 as i32 { "f64" } else { "f32" },
        "sha256": d.sha256, "label_classes": d.label_classes, "bytes": d.bytes,
        "idle_seconds": d.idle_seconds})
}

pub async fn datasets(args: DatasetsArgs) -> Result<(), CliError> {
    let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
    let mut trainer = client::trainer(channel);
    if let Some(id) = args.delete {
        trainer
            .delete_dataset(routed(pb::DeleteDatasetRequest {
                dataset_id: id.clone(),
            }))
            .await
            .map_err(CliError::rpc("DeleteDataset"))?;
        if args.json {
            println!("{}", json!({"deleted": id}));
        } else {
            println!("deleted dataset {id}");
        }
        return Ok(());
    }
    let mut all = Vec::new();
    // Every page after the first goes to the replica that answered it (its tokens are
    // its own).
    let (mut token, mut to) = (String::new(), args.replica.clone().unwrap_or_default());
    loop {
        let page = trainer
            .list_datasets(routed_to(
                pb::ListDatasetsRequest {
                    page_size: 500,
                    page_token: token,
                },
                &to,
            ))
            .await
            .map_err(CliError::rpc("ListDatasets"))?
            .into_inner();
        all.extend(page.datasets);
        if page.next_page_token.is_empty() {
            break;
        }
        (token, to) = (page.next_page_token, page.replica);
    }
    if args.json {
        println!(
            "{}",
            serde_json::Value::Array(all.iter().map(info_json).collect())
        );
        return Ok(());
    }
    if all.is_empty() {
        println!("no datasets");
    }
    for d in &all {
        println!(
            "{}  {} rows × {}  {}  {} bytes  {}",
            d.dataset_id,
            d.rows,
            d.dim,
            if d.dtype == pb::Dtype::F64 as i32 {
                "f64"
            } else {
                "f32"
            },
            d.bytes,
            d.name
        );
    }
    Ok(())
}

pub async fn fit(args: FitArgs) -> Result<(), CliError> {
    let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
    let mut trainer = client::trainer(channel);
    let request = pb::FitRequest {
        model_id: args.id.clone(),
        dataset_id: args.dataset,
        validation_dataset_id: args.validation.unwrap_or_default(),
        validation_fraction: args.validation_fraction,
        epochs: args.epochs,
        max_steps: args.max_steps,
        batch_size: args.batch_size,
        seed: args.seed,
        schedule: args.lr_decay.map(|d| pb::Schedule {
            kind: pb::ScheduleKind::EpochDecay as i32,
            decay: Some(d),
            ..Default::default()
        }),
        early_stopping: args.patience.map(|p| pb::EarlyStopping {
            patience: p,
            ..Default::default()
        }),
        detach: args.detach,
        ..Default::default()
    };
    let events = trainer
        .fit(routed(request))
        .await
        .map_err(CliError::rpc("Fit"))?
        .into_inner();
    if args.detach {
        println!(
            "fit of model {} runs on the server; follow it with `backprop watch {}`",
            args.id, args.id
        );
        return Ok(());
    }
    let end = follow(events, args.json).await?;
    if !args.json {
        print_finish(&end);
    }
    outcome(&end)
}

pub async fn watch(args: WatchArgs) -> Result<(), CliError> {
    let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
    let mut trainer = client::trainer(channel);
    let events = trainer
        .watch_fit(routed(pb::WatchFitRequest {
            model_id: args.id,
            from_event: args.from,
        }))
        .await
        .map_err(CliError::rpc("WatchFit"))?
        .into_inner();
    let end = follow(events, args.json).await?;
    if !args.json {
        print_finish(&end);
    }
    outcome(&end)
}

fn print_finish(f: &pb::FitFinished) {
    let best = f
        .best_step
        .map_or(String::new(), |s| format!(", best at step {s}"));
    println!(
        "fit {}: {} steps, {} epochs, the model at step {}{best}",
        end_name(f.reason),
        f.steps,
        f.epochs,
        f.step
    );
}
