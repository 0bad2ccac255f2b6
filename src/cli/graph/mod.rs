//! `backprop graph ID`: the model's computational graph on one small batch (TraceStep),
//! written as an SVG laid out here, Graphviz DOT, or JSON. Read-only: the model is not
//! changed.
pub mod dot;
pub mod draw;
pub mod svg;

pub use crate::pb::trace::from_wire;
pub use dot::dot;
pub use draw::{Graph, json};
pub use svg::svg;

use std::path::PathBuf;

use crate::cli::client::{self, CONNECT_TIMEOUT, ServerArgs};
use crate::cli::csv::{self, CsvOptions};
use crate::cli::error::CliError;
use crate::engine::rng::Rng;
use crate::pb;
use crate::service::route::routed;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Svg,
    Dot,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct GraphArgs {
    /// The model id.
    pub id: String,
    /// A CSV batch (label column + features, as for `train`). Default: 2 random rows
    /// (seed 0) with labels 0 and 1.
    #[arg(long, value_name = "FILE.csv")]
    pub batch: Option<PathBuf>,
    /// Which column (1-based) of the batch holds the label.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub label_column: u32,
    /// Where to write the picture; `-` for stdout.
    #[arg(long, short, default_value = "graph.svg", value_name = "PATH")]
    pub out: String,
    /// Output format; default: from the --out extension (.dot, .gv, .json), else svg.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Only the structure (kinds, shapes): no values or gradients, no size limits.
    #[arg(long)]
    pub shapes_only: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

impl GraphArgs {
    fn format(&self) -> Format {
        self.format.unwrap_or_else(|| {
            match self
                .out
                .rsplit_once('.')
                .map(|(_, e)| e.to_ascii_lowercase())
            {
                Some(e) if e == "dot" || e == "gv" => Format::Dot,
                Some(e) if e == "json" => Format::Json,
                _ => Format::Svg,
            }
        })
    }
}

/// The default batch: 2 rows uniform in [-1, 1), labels 0 and 1 (seed 0, so the same
/// picture every time).
fn random_batch(dim: usize) -> (Vec<f64>, Vec<u32>) {
    let mut rng = Rng::new(0);
    let x = (0..2 * dim).map(|_| 2.0 * rng.uniform() - 1.0).collect();
    (x, vec![0, 1])
}

pub async fn graph(args: GraphArgs) -> Result<(), CliError> {
    let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
    let mut trainer = client::trainer(channel);
    let model = trainer
        .get_model(routed(pb::GetModelRequest {
            model_id: args.id.clone(),
            include_values: false,
            ..Default::default()
        }))
        .await
        .map_err(CliError::rpc("GetModel"))?
        .into_inner();
    let spec = model.spec.unwrap_or_default();
    let dim = spec.input_dim as usize;
    let (x, labels) = match &args.batch {
        None => random_batch(dim),
        Some(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
                path: shown.clone(),
                source,
            })?;
            let opts = CsvOptions {
                label_column: Some(args.label_column as usize - 1),
                names: None,
                columns: None,
                classes: Some(spec.num_classes),
            };
            let data = csv::parse(&shown, &text, opts)?;
            if data.dim != dim {
                return Err(CliError::Usage(format!(
                    "{shown}: {} feature columns, but model {} takes {dim}",
                    data.dim, args.id
                )));
            }
            (data.features, data.labels)
        }
    };
    let rows = labels.len() as u32;
    let request = |shapes_only: bool| {
        routed(pb::TraceStepRequest {
            model_id: args.id.clone(),
            x: Some(pb::Tensor {
                shape: vec![rows, dim as u32],
                values_f64: x.clone(),
                ..Default::default()
            }),
            labels: labels.clone(),
            shapes_only,
        })
    };
    let trace = match trainer.trace_step(request(args.shapes_only)).await {
        Ok(t) => t.into_inner(),
        // A model too large for a trace with values (a node over the server's limit):
        // draw its structure, and say why the values are missing.
        Err(e)
            if !args.shapes_only
                && e.code() == tonic::Code::InvalidArgument
                && e.message().starts_with("shapes_only: ") =>
        {
            let why = e.message().trim_start_matches("shapes_only: ");
            let why = why.split(';').next().unwrap_or(why);
            eprintln!("values left out: {why}; drawing the structure (kinds and shapes) only");
            trainer
                .trace_step(request(true))
                .await
                .map_err(CliError::rpc("TraceStep"))?
                .into_inner()
        }
        Err(e) => return Err(CliError::rpc("TraceStep")(e)),
    };
    let g = from_wire(&trace);
    let text = match args.format() {
        Format::Svg => svg(&g),
        Format::Dot => dot(&g),
        Format::Json => draw::json(&g),
    };
    if args.out == "-" {
        print!("{text}");
        return Ok(());
    }
    std::fs::write(&args.out, text).map_err(|source| CliError::Write {
        path: args.out.clone(),
        source,
    })?;
    eprintln!("wrote {} ({} nodes)", args.out, g.nodes.len());
    Ok(())
}
