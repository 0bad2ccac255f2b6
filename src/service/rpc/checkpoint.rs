//! ExportModel and ImportModel: a session's checkpoint file streamed out in chunks made
//! as the transport asks for them, and streamed in with what has arrived held against
//! the memory budget (the chunk format is `pb::chunks`).
use tonic::{Request, Response, Status, Streaming};

use super::TrainerService;
use super::call::split;
use crate::pb;
use crate::pb::chunks::Outgoing;
use crate::service::checkpoint::{self, ChunkStream};
use crate::service::convert::spec_to_proto;
use crate::service::limits::{check_checkpoint_header, check_spec_size, checkpoint_work};
use crate::service::status::{Reason, invalid_because};
use crate::session::Record;
use crate::session::history::now;
use crate::session::record::KEY_ABOUT;

pub async fn export(
    svc: &TrainerService,
    req: Request<pb::ExportModelRequest>,
) -> Result<Response<ChunkStream>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_session(&req.model_id, &tenant)?;
    on.observe("ExportModel", async {
        let chunk = checkpoint::chunk_size(req.chunk_bytes, svc.admission.max_message_bytes)?;
        let guard = on.read().await?;
        // Encoded under the read lock: one consistent snapshot of values, state, step.
        // Hashed too; the chunks are sliced lazily as they are sent.
        let work = checkpoint_work(on.session.spec.state_bytes().unwrap_or(u64::MAX));
        let record = on.session.kept().to_metadata();
        let file = svc
            .run(work, move || {
                let meta: Vec<_> = record.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let file = crate::checkpoint::encode(&guard.guard, &meta);
                drop(guard);
                file.map(Outgoing::new)
            })
            .await??;
        Ok(checkpoint::stream(file, chunk))
    })
    .await
}

pub async fn import(
    svc: &TrainerService,
    req: Request<Streaming<pb::CheckpointChunk>>,
) -> Result<Response<pb::ImportModelResponse>, Status> {
    let (tenant, stream) = split(req);
    svc.observe("ImportModel", "", 0, async {
        // What has arrived is held against the budget while the rest arrives and while
        // it decodes; the decoded model is then admitted by its own size. (The model's
        // copy made during the decode, beside the file, is the kind of transient the
        // budget's headroom is for: see `session::budget::DEFAULT_MEMORY_FRACTION`.)
        // Uploads together hold at most their share of the budget, so however many stall
        // the rest stays for other calls.
        let mut held = svc.store.start_upload();
        let most = svc.store.max_checkpoint_bytes();
        let stall = svc.admission.limits.upload_stall;
        let file = checkpoint::receive(stream, most, stall, |more| {
            Ok(svc.store.grow_upload(&mut held, more)?)
        })
        .await?;
        check_checkpoint_header(&file)?;
        let work = checkpoint_work(file.len() as u64);
        let decoded = svc
            .run(work, move || crate::checkpoint::decode(&file))
            .await??;
        drop(held);
        let mut record = Record::from_metadata(&decoded.extra).map_err(|(key, e)| {
            invalid_because(Reason::InvalidCheckpoint, format!("checkpoint.{key}"), e)
        })?;
        if !decoded.extra.contains_key(KEY_ABOUT) {
            // A file from before models had metadata: the model is created here, now.
            record.about.created = now();
        }
        let model = decoded.model;
        check_spec_size(model.spec())?;
        svc.store.admit(model.spec(), &tenant)?;
        let session = svc.store.insert(model, &tenant, record).await?;
        tracing::info!(model_id = %session.id, %tenant, parameters = session.parameter_count, step = session.step(), "imported");
        Ok(pb::ImportModelResponse {
            model_id: session.id.to_string(),
            parameter_count: session.parameter_count,
            spec: Some(spec_to_proto(&session.spec)),
            step: session.step(),
        })
    })
    .await
}
