//! The `backprop` client subcommands, for people at a terminal and for scripts: `train` a
//! model on a CSV file, list (`models`), `show` and `delete` models, and `health` (exit 0
//! iff the server is SERVING; Docker's HEALTHCHECK runs it). They talk to a running server
//! over gRPC, like any other client.
//!
//! - [`client`]: the shared `--address` flag and the connection.
//! - [`csv`]: labelled CSV → dataset, every rejection at `file:line:col`.
//! - [`train`]: split, create, upload the rows, Fit on the server, Evaluate, summary; its
//!   `progress` (a bar on a terminal, plain lines in a pipe) and `plot` (the
//!   loss/accuracy curve as a hand-written SVG).
//! - [`predict`]: `predict` and `eval`, a trained model on new rows.
//! - [`models`], [`health`]: the other subcommands; [`describe`]: specs in words, tables;
//!   [`about`]: names and labels (`--name`, `--label`, `label`, `rename`).
//! - [`bench`](mod@bench): the load generator (`bench::load`: callers and tally; `bench::workload`:
//!   the specs and batches of bench/README.md).
//! - [`checkpoint`]: `export` and `import`, a model to and from a safetensors file;
//!   [`migrate`]: a model moved to another replica through the proxy.
//! - [`fit`](mod@fit): `upload`, `datasets`, `fit` and `watch`: datasets held by the server and
//!   fits on them, a fit's events drawn as progress.
//! - [`graph`]: a model's computational graph on a small batch (TraceStep) as SVG, DOT, JSON,
//!   and the renderers themselves (`graph::dot`, `graph::svg`, `graph::draw`).
//! - [`error`]: what can go wrong, worded for people.
use std::process::ExitCode;

pub mod about;
pub mod bench;
pub mod checkpoint;
pub mod client;
pub mod csv;
pub mod describe;
pub mod error;
pub mod fit;
pub mod graph;
pub mod health;
pub mod migrate;
pub mod models;
pub mod predict;
pub mod train;

pub use error::CliError;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Train a model on a CSV file (label column + feature columns) and plot its curve.
    Train(train::TrainArgs),
    /// List the models on the server.
    Models(models::ModelsArgs),
    /// Show one model: spec, step, parameter shapes (and values with --values).
    Show(models::ShowArgs),
    /// Delete a model.
    Delete(models::DeleteArgs),
    /// Add, change (KEY=VALUE) or remove (KEY-) a model's labels.
    Label(about::LabelArgs),
    /// Give a model a new name ("" removes it).
    Rename(about::RenameArgs),
    /// Ask the server's gRPC health service; exit 0 iff SERVING.
    Health(health::HealthArgs),
    /// Load-test the server with a workload of bench/README.md (like ghz).
    Bench(bench::BenchArgs),
    /// Draw a model's computational graph on a small batch (SVG, DOT or JSON).
    Graph(graph::GraphArgs),
    /// Save a model's whole state (parameters, optimizer state, step) as a safetensors file.
    Export(checkpoint::ExportArgs),
    /// Create a model from a safetensors checkpoint; it continues training where it was.
    Import(checkpoint::ImportArgs),
    /// Upload a CSV file (label column + feature columns) as a dataset held by the server.
    Upload(fit::UploadArgs),
    /// List the datasets on the server (or delete one with --delete).
    Datasets(fit::DatasetsArgs),
    /// Train a model on a dataset held by the server, showing the fit's progress.
    Fit(fit::FitArgs),
    /// Follow a model's fit (running or last), replaying the events it missed.
    Watch(fit::WatchArgs),
    /// Predict the class of each row of a CSV file (with --proba, each class's probability).
    Predict(predict::PredictArgs),
    /// Accuracy and loss of a model on a labelled CSV file.
    Eval(predict::EvalArgs),
    /// Move a model to another replica behind a proxy (export, import there, check,
    /// delete the source), e.g. to drain a node.
    Migrate(migrate::MigrateArgs),
}

/// A reader that stops early (`backprop models | head`) makes the next `println!` fail
/// with a broken pipe, which panics: end quietly instead (exit 0), as other tools do.
/// SIGPIPE itself stays ignored, as Rust sets it: a connection the server closed must be
/// an error the command reports, not a silent death.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Runs one subcommand; errors go to stderr and exit 1.
pub async fn run(command: Command) -> ExitCode {
    quiet_on_closed_stdout();
    let result = match command {
        Command::Train(args) => train::train(args).await,
        Command::Models(args) => models::models(args).await,
        Command::Show(args) => models::show(args).await,
        Command::Delete(args) => models::delete(args).await,
        Command::Label(args) => about::label(args).await,
        Command::Rename(args) => about::rename(args).await,
        Command::Health(args) => health::health(args).await,
        Command::Bench(args) => bench::bench(args).await,
        Command::Graph(args) => graph::graph(args).await,
        Command::Export(args) => checkpoint::export(args).await,
        Command::Import(args) => checkpoint::import(args).await,
        Command::Upload(args) => fit::upload(args).await,
        Command::Datasets(args) => fit::datasets(args).await,
        Command::Fit(args) => fit::fit(args).await,
        Command::Watch(args) => fit::watch(args).await,
        Command::Migrate(args) => migrate::migrate(args).await,
        Command::Predict(args) => predict::predict(args).await,
        Command::Eval(args) => predict::eval(args).await,
    };
    match result {
        Ok(()) | Err(CliError::Quiet) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.report());
            ExitCode::FAILURE
        }
    }
}
