//! UploadDataset, GetDataset, ListDatasets, DeleteDataset. An upload is decoded chunk by
//! chunk on the compute pool (values and finiteness on one thread, the checksum on
//! another, while the next chunk arrives: work in proportion to its size), with what
//! has arrived held against the memory budget and the datasets' cap,
//! and cut off when it stalls; it creates nothing unless every row arrived intact.
use tonic::{Request, Response, Status, Streaming};

use super::TrainerService;
use super::call::split;
use super::models::MAX_PAGE_SIZE;
use super::models::{page_token, parse_page_token};
use crate::dataset::Builder;
use crate::pb;
use crate::pb::dataset::DatasetHash;
use crate::service::checkpoint::next_chunk;
use crate::service::convert::dataset::{header_from_proto, info_to_proto};
use crate::service::limits::{check_dataset_id, checkpoint_work};
use crate::service::status::invalid;
use crate::session;

pub async fn upload(
    svc: &TrainerService,
    req: Request<Streaming<pb::DatasetChunk>>,
) -> Result<Response<pb::DatasetInfo>, Status> {
    let (tenant, mut stream) = split(req);
    svc.observe("UploadDataset", "", 0, async {
        let stall = svc.admission.limits.upload_stall;
        let mut chunk = next_chunk(&mut stream, stall, "0 rows")
            .await?
            .ok_or_else(|| invalid("chunks", "the upload is empty: no chunk arrived"))?;
        let header = chunk
            .header
            .take()
            .ok_or_else(|| invalid("header", "required in the first chunk"))?;
        let mut builder = Builder::new(header_from_proto(header)?)?;
        let mut hold = svc.store.start_dataset_upload(builder.declared_bytes(), &tenant)?;
        let mut hash = DatasetHash::default();
        loop {
            if chunk.header.is_some() {
                return Err(invalid("header", "only the first chunk carries the header"));
            }
            // Three things at once: this chunk decoded on one pool thread, its bytes
            // hashed on another (the checksum is the slowest part and must go in
            // order), and the next chunk received.
            let work = checkpoint_work(chunk.x.len() as u64);
            let arrived = format!("{} rows", builder.rows() + chunk.labels.len() as u64);
            let x = chunk.x.clone();
            let store = svc.store.clone();
            let decode = svc.run(work, move || {
                let pushed = builder.push(chunk.first_row, &chunk.x, &chunk.labels, |more| {
                    store.grow_dataset_upload(&mut hold, more).map_err(Status::from)
                });
                (builder, hold, pushed)
            });
            let hashing = svc.run(work, move || {
                hash.rows(&x);
                hash
            });
            let (decoded, hashed, next) =
                tokio::join!(decode, hashing, next_chunk(&mut stream, stall, arrived));
            let (b, h, pushed) = decoded?;
            pushed?;
            (builder, hold, hash) = (b, h, hashed?);
            match next? {
                Some(next) => chunk = next,
                None => break,
            }
        }
        let data = svc.run(0, move || builder.finish(hash)).await??;
        let stored = svc.store.insert_dataset(data, &tenant, hold).await?;
        tracing::info!(dataset_id = %stored.id, %tenant, rows = stored.data.rows(), dim = stored.data.dim(), bytes = stored.data.bytes(), "dataset uploaded");
        Ok(info_to_proto(&stored))
    })
    .await
}

pub async fn get(
    svc: &TrainerService,
    req: Request<pb::GetDatasetRequest>,
) -> Result<Response<pb::DatasetInfo>, Status> {
    let (tenant, req) = split(req);
    check_dataset_id("dataset_id", &req.dataset_id)?;
    svc.observe("GetDataset", &req.dataset_id, 0, async {
        let d = svc.store.get_dataset(&req.dataset_id, &tenant)?;
        Ok(info_to_proto(&d))
    })
    .await
}

pub async fn list(
    svc: &TrainerService,
    req: Request<pb::ListDatasetsRequest>,
) -> Result<Response<pb::ListDatasetsResponse>, Status> {
    let (tenant, req) = split(req);
    svc.observe("ListDatasets", "", 0, async {
        let after = parse_page_token(&req.page_token, svc.store.replica())?;
        let size = match req.page_size {
            0 => None,
            n => Some((n as usize).min(MAX_PAGE_SIZE)),
        };
        let page = session::page(svc.store.list_datasets(&tenant), after, size);
        Ok(pb::ListDatasetsResponse {
            datasets: page.items.iter().map(|d| info_to_proto(d)).collect(),
            next_page_token: page.next_after.map(page_token).unwrap_or_default(),
            replica: svc.store.replica().name().unwrap_or_default().to_string(),
        })
    })
    .await
}

pub async fn delete(
    svc: &TrainerService,
    req: Request<pb::DeleteDatasetRequest>,
) -> Result<Response<pb::DeleteDatasetResponse>, Status> {
    let (tenant, req) = split(req);
    check_dataset_id("dataset_id", &req.dataset_id)?;
    svc.observe("DeleteDataset", &req.dataset_id, 0, async {
        svc.store.remove_dataset(&req.dataset_id, &tenant).await?;
        tracing::info!(dataset_id = %req.dataset_id, "dataset deleted");
        Ok(pb::DeleteDatasetResponse {})
    })
    .await
}
