//! `backprop export ID FILE` and `backprop import FILE`: a model's checkpoint (one
//! safetensors file; see `crate::checkpoint`) to and from disk. An export lands whole or
//! not at all (written beside the target, checked against the server's SHA-256, then
//! renamed), so a half-downloaded file never carries the final name.
use std::path::PathBuf;

use serde_json::json;
use tokio_stream::StreamExt;

use super::client::{self, CONNECT_TIMEOUT, ServerArgs};
use super::error::CliError;
use crate::checkpoint::file::write_atomic;
use crate::pb;
use crate::pb::chunks::{DEFAULT_CHUNK_BYTES, sha256_hex, split};
use crate::pb::trainer_client::TrainerClient;
use crate::service::route::{routed, routed_to};

pub(super) type Trainer = TrainerClient<client::Connection>;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The model id.
    pub id: String,
    /// Where to write the safetensors file.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// A safetensors checkpoint written by `backprop export` (or ExportModel).
    pub file: PathBuf,
    /// Behind a proxy in front of several replicas: import onto this replica (its
    /// `--replica-id`). Without it any replica takes the model.
    #[arg(long, value_name = "REPLICA")]
    pub to: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Model `id`'s checkpoint, whole and checked against the SHA-256 the server declared.
pub async fn download(trainer: &mut Trainer, id: &str) -> Result<Vec<u8>, CliError> {
    let mut stream = trainer
        .export_model(routed(pb::ExportModelRequest {
            model_id: id.to_string(),
            chunk_bytes: 0,
        }))
        .await
        .map_err(CliError::rpc("ExportModel"))?
        .into_inner();
    let mut file = Vec::new();
    let (mut total, mut declared) = (0, String::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(CliError::rpc("ExportModel"))?;
        if chunk.offset == 0 {
            (total, declared) = (chunk.total_bytes, chunk.sha256);
        }
        file.extend_from_slice(&chunk.data);
    }
    let got = sha256_hex(&file);
    if file.len() as u64 != total || got != declared {
        return Err(CliError::Usage(format!(
            "the export arrived damaged: {} of {total} bytes, SHA-256 {got} (server: {declared}); nothing was written",
            file.len()
        )));
    }
    Ok(file)
}

/// Imports `file` as a new model on the replica `to` names (a replica name or an id of
/// its; empty: any), through a proxy that routes on the header.
pub async fn upload(
    trainer: &mut Trainer,
    file: Vec<u8>,
    to: &str,
) -> Result<pb::ImportModelResponse, CliError> {
    Ok(trainer
        .import_model(routed_to(
            tokio_stream::iter(split(file, DEFAULT_CHUNK_BYTES)),
            to,
        ))
        .await
        .map_err(CliError::rpc("ImportModel"))?
        .into_inner())
}

pub async fn export(args: ExportArgs) -> Result<(), CliError> {
    let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
    let file = download(&mut client::trainer(channel), &args.id).await?;
    let got = sha256_hex(&file);
    write_atomic(&args.file, &file).map_err(|source| CliError::Write {
        path: args.file.display().to_string(),
        source,
    })?;
    if args.json {
        println!(
            "{}",
            json!({ "model_id": args.id, "file": args.file, "bytes": file.len(), "sha256": got })
        );
    } else {
        println!(
            "exported {} to {} ({} bytes, sha256 {got})",
            args.id,
            args.file.display(),
            file.len()
        );
    }
    Ok(())
}

pub async fn import(args: ImportArgs) -> Result<(), CliError> {
    let path = args.file.display().to_string();
    let file = std::fs::read(&args.file).map_err(|source| CliError::Read {
        path: path.clone(),
        source,
    })?;
    let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
    let to = args.to.as_deref().unwrap_or("");
    let r = upload(&mut client::trainer(channel), file, to).await?;
    if args.json {
        println!(
            "{}",
            json!({ "model_id": r.model_id, "parameter_count": r.parameter_count, "step": r.step })
        );
    } else {
        println!(
            "imported {path} as {} ({} parameters, step {})",
            r.model_id, r.parameter_count, r.step
        );
    }
    Ok(())
}
