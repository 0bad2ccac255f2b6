//! `backprop migrate ID --to REPLICA`: moves a session to another replica behind the
//! proxy (to drain a node): export, import through the proxy onto the target, check the
//! copy is the same model at the same step, then delete the source. A model that changes
//! while it moves (a step, a fit) is not moved: the copy is deleted and the source stays.
use serde_json::json;

use super::checkpoint::{Trainer, download, upload};
use super::client::{self, CONNECT_TIMEOUT, ServerArgs};
use super::error::CliError;
use crate::pb;
use crate::service::route::routed;
use crate::session::id::is_replica_name;

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The model to move (`REPLICA.<32 hex>`).
    pub id: String,
    /// The replica to move it to (its `--replica-id`).
    #[arg(long, value_name = "REPLICA")]
    pub to: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

async fn snapshot(trainer: &mut Trainer, id: &str) -> Result<pb::GetModelResponse, CliError> {
    Ok(trainer
        .get_model(routed(pb::GetModelRequest {
            model_id: id.to_string(),
            include_values: true,
            ..Default::default()
        }))
        .await
        .map_err(CliError::rpc("GetModel"))?
        .into_inner())
}

async fn delete(trainer: &mut Trainer, id: &str) -> Result<(), CliError> {
    trainer
        .delete_model(routed(pb::DeleteModelRequest {
            model_id: id.to_string(),
        }))
        .await
        .map_err(CliError::rpc("DeleteModel"))?;
    Ok(())
}

pub async fn migrate(args: MigrateArgs) -> Result<(), CliError> {
    if !is_replica_name(&args.to) {
        return Err(CliError::Usage(format!(
            "--to {:?}: not a replica name (a --replica-id such as backprop-2)",
            args.to
        )));
    }
    if args.id.split_once('.').map(|(r, _)| r) == Some(args.to.as_str()) {
        return Err(CliError::Usage(format!(
            "{} is already on replica {}",
            args.id, args.to
        )));
    }
    let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
    let mut trainer = client::trainer(channel);
    let before = snapshot(&mut trainer, &args.id).await?;
    let file = download(&mut trainer, &args.id).await?;
    let copy = upload(&mut trainer, file, &args.to)
        .await
        .map_err(|e| CliError::Usage(format!("nothing moved: {e}")))?;
    let placed = copy.model_id.split_once('.').map(|(r, _)| r.to_string());
    let check = async {
        if placed.as_deref() != Some(args.to.as_str()) {
            return Err(format!(
                "the copy landed on {} instead of {}: is --address a proxy that routes on \
                 the x-backprop-model header (docs/DEPLOY.md)?",
                placed.as_deref().unwrap_or("a server without --replica-id"),
                args.to
            ));
        }
        let copied = snapshot(&mut trainer, &copy.model_id)
            .await
            .map_err(|e| e.to_string())?;
        let now = snapshot(&mut trainer, &args.id)
            .await
            .map_err(|e| e.to_string())?;
        if now.step != before.step || now.parameters != before.parameters {
            return Err(format!(
                "{} changed while it moved (step {} → {}): stop what trains it (calls, a \
                 fit) and migrate again",
                args.id, before.step, now.step
            ));
        }
        if copied.step != before.step || copied.parameters != before.parameters {
            return Err(format!(
                "the copy {} is not the same model as {}",
                copy.model_id, args.id
            ));
        }
        Ok(())
    }
    .await;
    if let Err(why) = check {
        let cleanup = delete(&mut trainer, &copy.model_id).await;
        return Err(CliError::Usage(match cleanup {
            Ok(()) => format!("nothing moved: {why}"),
            Err(e) => format!(
                "nothing moved: {why}; the copy {} is left: {e}",
                copy.model_id
            ),
        }));
    }
    delete(&mut trainer, &args.id).await?;
    if args.json {
        println!(
            "{}",
            json!({"from": args.id, "model_id": copy.model_id, "replica": args.to, "step": copy.step})
        );
    } else {
        println!(
            "moved {} to {} (replica {}, step {}); use the new id from now on",
            args.id, copy.model_id, args.to, copy.step
        );
    }
    Ok(())
}
