//! `backprop train --data FILE.csv`: read a labelled CSV, split off a held-out fraction
//! (after a seeded shuffle, so the same seed gives the same split and the same run), create
//! a model from flags, upload the training and held-out rows as datasets, train with Fit
//! on the server (its events drive the progress bar; the held-out rows are its
//! validation set), score the held-out rows with Evaluate, and draw the loss/accuracy
//! curve from the model's history beside the data.
mod data;
pub mod plot;
pub mod progress;

use std::path::{Path, PathBuf};

use self::data::{statistics, warnings};
use self::plot::Curve;
use crate::cli::client::{self, CONNECT_TIMEOUT, ServerArgs};
use crate::cli::csv::{self, CsvOptions, Dataset};
use crate::cli::describe;
use crate::cli::error::CliError;
use crate::cli::fit;
use crate::engine::rng::Rng;
use crate::pb;
use crate::service::route::routed;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// CSV file, one example per line: a label column (class index 0, 1, 2, …) and numeric
    /// feature columns. A first line that is not all numbers is taken as a header.
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
    #[command(flatten)]
    pub columns: crate::cli::csv::ColumnArgs,
    /// Continue training this model (an id or a prefix of one) instead of creating one:
    /// its own spec, preprocessing and class names apply, and the layer, loss, optimizer
    /// and dtype flags are not used.
    #[arg(long, value_name = "ID", conflicts_with = "standardize")]
    pub model: Option<String>,
    /// Which column (1-based) holds the label.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub label_column: u32,
    /// Number of classes; default: the largest label + 1.
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..), value_name = "C")]
    pub classes: Option<u32>,
    /// Hidden layer sizes, input side first (`none` for a linear classifier).
    #[arg(long, default_value = "64", value_parser = parse_hidden, value_name = "N,N,…")]
    pub hidden: Hidden,
    /// Activation of the hidden layers: one for all, or one per layer (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "relu")]
    pub activation: Vec<ActivationArg>,
    #[arg(long, value_enum, default_value = "softmax")]
    pub loss: LossArg,
    /// L2 regularization strength λ in R = λ·Σ W².
    #[arg(long, default_value_t = 0.0, value_name = "λ")]
    pub l2: f64,
    /// The update rule (the server's names for them).
    #[arg(long, default_value = "adam", value_parser = describe::optimizer_choices())]
    pub optimizer: String,
    /// Learning rate; default: the server's for the optimizer (1e-3 Adam and AdamW, 1e-2
    /// others).
    #[arg(long)]
    pub lr: Option<f64>,
    /// AdamW's decoupled weight decay λ: every parameter, biases too, shrinks by lr·λ·w
    /// each step, outside the loss (unlike --l2); default: the server's, 0.01. Only with
    /// --optimizer adamw.
    #[arg(long, value_name = "λ")]
    pub weight_decay: Option<f64>,
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub epochs: u32,
    /// Seeds the parameters, the shuffle and the held-out split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of the rows held out for evaluation (0 for none).
    #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
    pub holdout: f64,
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
    /// Scale each feature to zero mean and unit variance, with the training rows'
    /// statistics kept in the model: the server standardizes every batch itself, so
    /// Forward, Evaluate and `backprop show` callers send raw features.
    #[arg(long)]
    pub standardize: bool,
    /// Where to write the curve; default: beside the data, FILE.curve.svg.
    #[arg(long, value_name = "PATH")]
    pub plot: Option<PathBuf>,
    /// Delete the model once it is trained and evaluated (a try-out that leaves nothing
    /// on the server).
    #[arg(long)]
    pub rm: bool,
    /// The model's name and labels (with --model, they change the model's).
    #[command(flatten)]
    pub about: crate::cli::about::AboutArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Hidden layer sizes.
#[derive(Debug, Clone)]
pub struct Hidden(pub Vec<u32>);

fn parse_hidden(s: &str) -> Result<Hidden, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return Ok(Hidden(Vec::new()));
    }
    s.split(',')
        .map(|n| match n.trim().parse::<u32>() {
            Ok(0) | Err(_) => Err(format!(
                "{n:?} is not a layer size; expected positive integers like 64,32 (or none)"
            )),
            Ok(v) => Ok(v),
        })
        .collect::<Result<_, _>>()
        .map(Hidden)
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ActivationArg {
    Relu,
    Sigmoid,
    Tanh,
    LeakyRelu,
    Elu,
    Maxout,
    /// x·Φ(x), exact (erf).
    Gelu,
    /// GELU by its tanh approximation.
    GeluTanh,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LossArg {
    Svm,
    Softmax,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DtypeArg {
    F32,
    F64,
}

/// Rows per Evaluate call are capped so that one request stays near a million numbers.
const EVAL_ELEMENTS: usize = 1 << 20;

pub async fn train(args: TrainArgs) -> Result<(), CliError> {
    let spec_hidden = hidden_layers(&args)?;
    check_flags(&args)?;
    // The choices are the model's names, each pinned to a proto kind by tests.
    let optimizer = describe::optimizer_wire(&args.optimizer).ok_or_else(|| {
        CliError::Usage(format!(
            "--optimizer {}: no such proto kind",
            args.optimizer
        ))
    })?;

    let path = args.data.display().to_string();
    let text = std::fs::read_to_string(&args.data).map_err(|source| CliError::Read {
        path: path.clone(),
        source,
    })?;
    // The model to continue: its spec decides how the file is read. (Without one, the
    // file is read before connecting, so its mistakes are reported even with no server.)
    let mut connected = None;
    let existing = match &args.model {
        None => None,
        Some(given) => {
            let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
            let trainer = connected.insert(client::trainer(channel));
            let id = crate::cli::models::resolve(trainer, given).await?;
            let got = trainer
                .get_model(routed(pb::GetModelRequest {
                    model_id: id.clone(),
                    ..Default::default()
                }))
                .await
                .map_err(CliError::rpc("GetModel"))?
                .into_inner();
            Some((
                id,
                got.spec.unwrap_or_default(),
                got.step,
                got.parameter_count,
            ))
        }
    };
    let columns = args.columns.columns();
    let opts = CsvOptions {
        label_column: Some(args.label_column as usize - 1),
        names: existing.as_ref().map(|e| e.1.class_names.as_slice()),
        columns: columns.as_ref(),
        classes: existing.as_ref().map(|e| e.1.num_classes).or(args.classes),
    };
    let data = csv::parse(&path, &text, opts)?;
    drop(text);
    if let Some((id, spec, ..)) = &existing
        && data.dim != spec.input_dim as usize
    {
        return Err(CliError::Usage(format!(
            "{path}: {} feature columns, but model {id} takes {}",
            data.dim, spec.input_dim
        )));
    }

    // One seeded shuffle decides the split; the same stream then orders each epoch.
    let mut rng = Rng::new(args.seed);
    let mut order: Vec<usize> = (0..data.rows()).collect();
    shuffle(&mut order, &mut rng);
    let held = held_out_rows(data.rows(), args.holdout)?;
    let (train_rows, held_rows) = order.split_at(data.rows() - held);
    let (train_rows, held_rows) = (train_rows.to_vec(), held_rows.to_vec());
    let standardized =
        args.standardize || existing.as_ref().is_some_and(|e| e.1.standardize.is_some());
    for w in warnings(&data, standardized) {
        eprintln!("warning: {w}");
    }
    let standardize = args.standardize.then(|| statistics(&data, &train_rows));

    let spec = pb::ModelSpec {
        input_dim: u32::try_from(data.dim)
            .map_err(|_| CliError::Usage(format!("{path}: too many feature columns")))?,
        hidden: spec_hidden,
        num_classes: data.classes,
        loss: match args.loss {
            LossArg::Svm => pb::LossKind::Svm,
            LossArg::Softmax => pb::LossKind::Softmax,
        } as i32,
        l2: args.l2,
        optimizer: Some(pb::Optimizer {
            kind: optimizer as i32,
            learning_rate: args.lr,
            weight_decay: args.weight_decay,
            ..Default::default()
        }),
        init: Some(pb::Init {
            seed: args.seed,
            ..Default::default()
        }),
        dtype: match args.dtype {
            DtypeArg::F32 => pb::Dtype::F32,
            DtypeArg::F64 => pb::Dtype::F64,
        } as i32,
        standardize,
        class_names: data.class_names.clone(),
        ..Default::default()
    };
    if !data.class_names.is_empty() {
        let mapping: Vec<String> = data
            .class_names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}={i}"))
            .collect();
        println!("classes (kept in the model): {}", mapping.join(", "));
    }

    let header = data
        .header
        .as_ref()
        .map_or(String::new(), |h| format!(", header: {}", h.join(",")));
    println!(
        "data: {path}: {} rows × {} features, {} classes{header}; {} train, {} held out{}",
        data.rows(),
        data.dim,
        data.classes,
        train_rows.len(),
        held_rows.len(),
        if args.standardize {
            ", standardized by the model (training rows' mean and std)"
        } else {
            ""
        }
    );

    let mut trainer = match connected {
        Some(t) => t,
        None => client::trainer(client::connect(&args.server, CONNECT_TIMEOUT).await?),
    };
    let (id, spec, parameters) = match existing {
        Some((id, spec, step, parameters)) => {
            println!("continuing model {id} from step {step}");
            if !args.about.is_empty() {
                trainer
                    .update_model(routed(pb::UpdateModelRequest {
                        model_id: id.clone(),
                        name: args.about.name.clone(),
                        set_labels: args.about.labels(),
                        ..Default::default()
                    }))
                    .await
                    .map_err(CliError::rpc("UpdateModel"))?;
            }
            (id, spec, parameters)
        }
        None => {
            let created = trainer
                .create_model(pb::CreateModelRequest {
                    spec: Some(spec),
                    name: args.about.name(),
                    labels: args.about.labels(),
                })
                .await
                .map_err(CliError::rpc("CreateModel"))?
                .into_inner();
            (
                created.model_id,
                created.spec.unwrap_or_default(),
                created.parameter_count,
            )
        }
    };
    let wide = spec.dtype == pb::Dtype::F64 as i32;
    println!(
        "model {id}: {}, {} loss, {}, {parameters} parameters",
        describe::layers(&spec),
        describe::loss(&spec),
        describe::optimizer(&spec),
    );

    // The rows go to the server once; the fit runs there, its events feed the bar.
    let train_set = fit::upload_rows(&mut trainer, &id, &data, &train_rows, &path, wide).await?;
    let held_set = match held_rows.is_empty() {
        true => None,
        false => Some(fit::upload_rows(&mut trainer, &id, &data, &held_rows, &path, wide).await?),
    };
    let started = std::time::Instant::now();
    let events = trainer
        .fit(routed(pb::FitRequest {
            model_id: id.clone(),
            dataset_id: train_set.dataset_id.clone(),
            validation_dataset_id: held_set
                .as_ref()
                .map_or(String::new(), |d| d.dataset_id.clone()),
            epochs: args.epochs,
            // A batch larger than the training rows is all of them, as a loop would take.
            batch_size: args.batch_size.min(train_rows.len() as u32),
            seed: args.seed,
            ..Default::default()
        }))
        .await
        .map_err(CliError::rpc("Fit"))?
        .into_inner();
    let end = fit::follow(events, false).await;
    // The datasets were this run's alone.
    for d in [Some(&train_set), held_set.as_ref()].into_iter().flatten() {
        let _ = trainer
            .delete_dataset(routed(pb::DeleteDatasetRequest {
                dataset_id: d.dataset_id.clone(),
            }))
            .await;
    }
    let end = end?;
    fit::outcome(&end)?;
    let elapsed = started.elapsed();
    let step = end.steps;
    let rate = step as f64 / elapsed.as_secs_f64().max(1e-9);

    let history = trainer
        .get_history(routed(pb::GetHistoryRequest {
            model_id: id.clone(),
        }))
        .await
        .map_err(CliError::rpc("GetHistory"))?
        .into_inner();
    let mut curve = Curve {
        title: format!("backprop train {path} (model {id})"),
        step_loss: history
            .steps
            .iter()
            .map(|p| p.data_loss + p.reg_loss)
            .collect(),
        step_accuracy: history.steps.iter().map(|p| p.accuracy).collect(),
        step_stride: history.stride,
        epochs: history
            .epochs
            .iter()
            .map(|e| (e.step, e.mean_loss, e.train_accuracy))
            .collect(),
        held_out: None,
    };
    let last_epoch = curve
        .epochs
        .last()
        .map_or((f64::NAN, f64::NAN), |e| (e.1, e.2));

    if !held_rows.is_empty() {
        curve.held_out = Some(evaluate(&mut trainer, &id, &data, &held_rows, wide).await?);
    }
    let plot_path = args
        .plot
        .clone()
        .unwrap_or_else(|| default_plot_path(&args.data));
    std::fs::write(&plot_path, plot::render(&curve)).map_err(|source| CliError::Write {
        path: plot_path.display().to_string(),
        source,
    })?;

    println!(
        "trained {} epochs, {step} steps in {:.2} s: {rate:.0} steps/s",
        args.epochs,
        elapsed.as_secs_f64()
    );
    println!(
        "final train loss {:.4} (mean over the last epoch's batches), train accuracy {:.4} \
         (on a sample of the training rows)",
        last_epoch.0, last_epoch.1
    );
    match curve.held_out {
        Some((loss, accuracy)) => println!(
            "held-out accuracy {accuracy:.4}, loss {loss:.4} ({} examples)",
            held_rows.len()
        ),
        None => println!("held-out accuracy: none (--holdout 0)"),
    }
    println!("curve: {}", plot_path.display());
    if args.rm {
        trainer
            .delete_model(routed(pb::DeleteModelRequest {
                model_id: id.clone(),
            }))
            .await
            .map_err(CliError::rpc("DeleteModel"))?;
        println!("model {id} deleted (--rm)");
    } else {
        println!("model {id} stays on the server (backprop show {id}; backprop delete {id})");
    }
    Ok(())
}

fn hidden_layers(args: &TrainArgs) -> Result<Vec<pb::HiddenLayer>, CliError> {
    let sizes = &args.hidden.0;
    let acts = &args.activation;
    if acts.len() != 1 && acts.len() != sizes.len() {
        return Err(CliError::Usage(format!(
            "--activation lists {} activations for {} hidden layers; give one for all or one per layer",
            acts.len(),
            sizes.len()
        )));
    }
    Ok(sizes
        .iter()
        .enumerate()
        .map(|(i, &units)| {
            let arg = acts[if acts.len() == 1 { 0 } else { i }];
            pb::HiddenLayer {
                units,
                activation: match arg {
                    ActivationArg::Relu => pb::Activation::Relu,
                    ActivationArg::Sigmoid => pb::Activation::Sigmoid,
                    ActivationArg::Tanh => pb::Activation::Tanh,
                    ActivationArg::LeakyRelu => pb::Activation::LeakyRelu,
                    ActivationArg::Elu => pb::Activation::Elu,
                    ActivationArg::Maxout => pb::Activation::Maxout,
                    ActivationArg::Gelu | ActivationArg::GeluTanh => pb::Activation::Gelu,
                } as i32,
                gelu_approximate: matches!(arg, ActivationArg::GeluTanh)
                    .then_some(pb::GeluApproximate::Tanh as i32),
                ..Default::default()
            }
        })
        .collect())
}

fn check_flags(args: &TrainArgs) -> Result<(), CliError> {
    if !(0.0..1.0).contains(&args.holdout) {
        return Err(CliError::Usage(format!(
            "--holdout {} must be in [0, 1)",
            args.holdout
        )));
    }
    if let Some(lr) = args.lr.filter(|lr| !(lr.is_finite() && *lr > 0.0)) {
        return Err(CliError::Usage(format!("--lr {lr} must be > 0")));
    }
    if let Some(wd) = args
        .weight_decay
        .filter(|wd| !(wd.is_finite() && *wd >= 0.0))
    {
        return Err(CliError::Usage(format!("--weight-decay {wd} must be ≥ 0")));
    }
    if !(args.l2.is_finite() && args.l2 >= 0.0) {
        return Err(CliError::Usage(format!("--l2 {} must be ≥ 0", args.l2)));
    }
    Ok(())
}

/// How many rows to hold out: the fraction rounded, at least one when asked for any, and
/// never all of them.
fn held_out_rows(rows: usize, fraction: f64) -> Result<usize, CliError> {
    if fraction == 0.0 {
        return Ok(0);
    }
    if rows < 2 {
        return Err(CliError::Usage(format!(
            "{rows} row cannot be split into training and held-out rows; use --holdout 0"
        )));
    }
    Ok(((rows as f64 * fraction).round() as usize).clamp(1, rows - 1))
}

/// Fisher–Yates with the engine's machine-independent generator.
fn shuffle(items: &mut [usize], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

pub(crate) fn tensor(data: &Dataset, rows: &[usize], wide: bool) -> pb::Tensor {
    let shape = vec![rows.len() as u32, data.dim as u32];
    let values = rows.iter().flat_map(|&r| data.row(r).iter().copied());
    if wide {
        pb::Tensor {
            shape,
            values_f64: values.collect(),
            ..Default::default()
        }
    } else {
        pb::Tensor {
            shape,
            values: values.map(|v| v as f32).collect(),
            ..Default::default()
        }
    }
}

/// Held-out (loss, accuracy), in Evaluate calls of bounded size, weighted by their rows.
pub(crate) async fn evaluate(
    trainer: &mut pb::trainer_client::TrainerClient<crate::cli::client::Connection>,
    id: &str,
    data: &Dataset,
    rows: &[usize],
    wide: bool,
) -> Result<(f64, f64), CliError> {
    let chunk = (EVAL_ELEMENTS / data.dim.max(1)).max(1);
    let (mut loss, mut correct) = (0.0, 0.0);
    for part in rows.chunks(chunk) {
        let answer = trainer
            .evaluate(routed(pb::EvaluateRequest {
                model_id: id.to_string(),
                x: Some(tensor(data, part, wide)),
                labels: part.iter().map(|&r| data.labels[r]).collect(),
            }))
            .await
            .map_err(CliError::rpc("Evaluate"))?
            .into_inner();
        let n = part.len() as f64;
        loss += answer.losses.and_then(|l| l.total_loss).unwrap_or(f64::NAN) * n;
        correct += answer.accuracy * n;
    }
    let n = rows.len() as f64;
    Ok((loss / n, correct / n))
}

/// `data.csv` → `data.curve.svg`, in the same folder.
fn default_plot_path(data: &Path) -> PathBuf {
    data.with_extension("curve.svg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_sizes() {
        assert_eq!(parse_hidden("64, 32").unwrap().0, [64, 32]);
        assert!(parse_hidden("none").unwrap().0.is_empty());
        assert!(parse_hidden("64,0").is_err());
        assert!(parse_hidden("x").is_err());
    }

    #[test]
    fn split_sizes() {
        assert_eq!(held_out_rows(100, 0.2).unwrap(), 20);
        assert_eq!(held_out_rows(3, 0.01).unwrap(), 1);
        assert_eq!(held_out_rows(3, 0.99).unwrap(), 2);
        assert_eq!(held_out_rows(1, 0.0).unwrap(), 0);
        assert!(held_out_rows(1, 0.5).is_err());
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<usize> = (0..50).collect();
        let mut b = a.clone();
        shuffle(&mut a, &mut Rng::new(7));
        shuffle(&mut b, &mut Rng::new(7));
        assert_eq!(a, b);
        assert_ne!(a, (0..50).collect::<Vec<_>>());
        a.sort_unstable();
        assert_eq!(a, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn plot_beside_data() {
        assert_eq!(
            default_plot_path(Path::new("dir/data.csv")),
            Path::new("dir/data.curve.svg")
        );
    }
}
