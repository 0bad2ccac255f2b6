//! Datasets end to end: an upload in chunks gives back its shape, dtype, checksum and
//! label range; Get, List (paged) and Delete; every malformed upload is refused with the
//! field at fault and creates nothing; the datasets' cap and the memory budget refuse
//! what does not fit, naming their flag; the state directory keeps datasets across a
//! restart and a delete removes the file.
use std::path::{Path, PathBuf};
use std::time::Duration;

use backprop::pb;
use backprop::pb::dataset::{Rows, sha256_hex, upload_chunks};
use backprop::server::Config;
use backprop::session::{Limits, PersistConfig};
use support::*;
use tonic::Code;

/// `n` rows of `d` values and labels below `c`, from `seed`: a blob per class.
pub fn blobs(n: usize, d: usize, c: u32, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut g = Gen::new(seed);
    let labels: Vec<u32> = (0..n).map(|_| g.below(c)).collect();
    let mut x = Vec::with_capacity(n * d);
    for &l in &labels {
        for j in 0..d {
            let centre = if j % c as usize == l as usize {
                2.0
            } else {
                0.0
            };
            x.push(centre + 0.5 * g.unit() as f32);
        }
    }
    (x, labels)
}

/// Uploads `chunks` as one stream.
pub async fn upload(
    c: &mut Client,
    chunks: Vec<pb::DatasetChunk>,
) -> Result<pb::DatasetInfo, tonic::Status> {
    c.upload_dataset(tokio_stream::iter(chunks))
        .await
        .map(|r| r.into_inner())
}

/// Uploads an f32 dataset in chunks of `rows_per_chunk` rows.
pub async fn upload_f32(
    c: &mut Client,
    x: &[f32],
    d: usize,
    labels: &[u32],
    rows_per_chunk: usize,
) -> pb::DatasetInfo {
    let chunks = upload_chunks(Rows::F32(x), d, labels, "blobs", rows_per_chunk * d * 4);
    upload(c, chunks).await.expect("UploadDataset")
}

async fn listed(c: &mut Client) -> Vec<String> {
    let mut ids: Vec<String> = c
        .list_datasets(pb::ListDatasetsRequest::default())
        .await
        .expect("ListDatasets")
        .into_inner()
        .datasets
        .into_iter()
        .map(|d| d.dataset_id)
        .collect();
    ids.sort();
    ids
}

fn x_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|a| a.to_le_bytes()).collect()
}

#[tokio::test]
async fn an_upload_in_chunks_is_described_listed_and_deleted() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (x, y) = blobs(50, 3, 4, 1);
    let info = upload_f32(&mut c, &x, 3, &y, 7).await;
    assert_eq!((info.rows, info.dim), (50, 3));
    assert_eq!(info.dtype, pb::Dtype::F32 as i32);
    assert_eq!(info.sha256, sha256_hex(&x_bytes(&x), &y));
    assert_eq!(info.label_classes, y.iter().max().unwrap() + 1);
    assert_eq!(info.bytes, 50 * 3 * 4 + 50 * 4);
    assert_eq!(info.name, "blobs");
    assert_eq!(info.dataset_id.len(), 32);
    let got = c
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: info.dataset_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((got.rows, &got.sha256), (50, &info.sha256));

    // f64 rows are kept as f64.
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v) / 3.0).collect();
    let chunks = upload_chunks(Rows::F64(&x64), 3, &y, "f64", 1 << 10);
    assert!(chunks.len() > 1);
    let info64 = upload(&mut c, chunks).await.unwrap();
    assert_eq!(info64.dtype, pb::Dtype::F64 as i32);
    assert_eq!(info64.bytes, 50 * 3 * 8 + 50 * 4);

    let mut both = vec![info.dataset_id.clone(), info64.dataset_id.clone()];
    both.sort();
    assert_eq!(listed(&mut c).await, both);
    let page = c
        .list_datasets(pb::ListDatasetsRequest {
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.datasets.len(), 1);
    assert_eq!(page.datasets[0].dataset_id, both[0]);
    assert!(!page.next_page_token.is_empty());

    c.delete_dataset(pb::DeleteDatasetRequest {
        dataset_id: info.dataset_id.clone(),
    })
    .await
    .unwrap();
    let gone = c
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: info.dataset_id.clone(),
        })
        .await
        .unwrap_err();
    assert_reason(&gone, Code::NotFound, "DATASET_NOT_FOUND");
    let again = c
        .delete_dataset(pb::DeleteDatasetRequest {
            dataset_id: info.dataset_id,
        })
        .await
        .unwrap_err();
    assert_reason(&again, Code::NotFound, "DATASET_NOT_FOUND");
    assert_eq!(listed(&mut c).await, vec![info64.dataset_id]);
    let bad = c
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(&bad, "dataset_id");
    srv.stop().await;
}

#[tokio::test]
async fn every_malformed_upload_names_its_field_and_creates_nothing() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let (x, y) = blobs(10, 2, 3, 2);
    let good = || upload_chunks(Rows::F32(&x), 2, &y, "t", 3 * 2 * 4);
    assert_eq!(good().len(), 4);

    let mut cases: Vec<(&str, Vec<pb::DatasetChunk>, &str)> = Vec::new();
    let mut truncated = good();
    truncated.pop();
    cases.push(("truncated", truncated, "chunks"));
    let mut reordered = good();
    reordered.swap(1, 2);
    cases.push(("reordered", reordered, "first_row"));
    let mut corrupted = good();
    let mut bytes = corrupted[1].x.to_vec();
    bytes[0] ^= 0x40;
    corrupted[1].x = bytes.into();
    cases.push(("a flipped bit", corrupted, "header.sha256"));
    let mut relabelled = good();
    relabelled[2].labels[0] = (relabelled[2].labels[0] + 1) % 3;
    cases.push(("a changed label", relabelled, "header.sha256"));
    let mut headless = good();
    headless[0].header = None;
    cases.push(("no header", headless, "header"));
    let mut two_headers = good();
    two_headers[1].header = two_headers[0].header.clone();
    cases.push(("a second header", two_headers, "header"));
    let mut partial = good();
    partial[1].x = partial[1].x.slice(..partial[1].x.len() - 4);
    cases.push(("half a row", partial, "x"));
    let mut short_labels = good();
    short_labels[1].labels.pop();
    cases.push(("a label missing", short_labels, "labels"));
    let mut nan = x.clone();
    nan[13] = f32::NAN;
    cases.push(("a NaN", upload_chunks(Rows::F32(&nan), 2, &y, "t", 24), "x"));
    let mut zero_rows = good();
    zero_rows[0].header.as_mut().unwrap().rows = 0;
    cases.push(("zero rows", zero_rows, "header.rows"));
    let mut too_many = good();
    too_many[0].header.as_mut().unwrap().rows = 9;
    cases.push(("more rows than declared", too_many, "x"));
    let mut bad_sha = good();
    bad_sha[0].header.as_mut().unwrap().sha256 = "00".into();
    cases.push(("a short checksum", bad_sha, "header.sha256"));
    let mut bad_dtype = good();
    bad_dtype[0].header.as_mut().unwrap().dtype = 9;
    cases.push(("an unknown dtype", bad_dtype, "header.dtype"));
    cases.push(("no chunk", Vec::new(), "chunks"));

    for (what, chunks, field) in cases {
        let e = upload(&mut c, chunks).await.expect_err(what);
        assert_invalid(&e, field);
        assert!(listed(&mut c).await.is_empty(), "{what} created a dataset");
    }
    let mut nan_status = upload(&mut c, upload_chunks(Rows::F32(&nan), 2, &y, "t", 24))
        .await
        .unwrap_err()
        .message()
        .to_string();
    nan_status.make_ascii_lowercase();
    assert!(nan_status.contains("row 6, column 1"), "{nan_status}");
    // The good upload still works after all that.
    upload(&mut c, good()).await.expect("the intact upload");
    srv.stop().await;
}

fn capped(max_dataset_memory: Option<u64>, max_memory: Option<u64>) -> Config {
    Config {
        limits: Limits {
            max_dataset_memory,
            max_memory,
            ..Limits::default()
        },
        ..test_config()
    }
}

#[tokio::test]
async fn datasets_beyond_their_cap_are_refused_naming_the_flag() {
    // 100 rows × 4 f32 + labels = 2,000 bytes each.
    let srv = TestServer::with_config(capped(Some(5_000), None)).await;
    let mut c = srv.trainer();
    let (x, y) = blobs(100, 4, 2, 3);
    let first = upload_f32(&mut c, &x, 4, &y, 10).await;
    upload_f32(&mut c, &x, 4, &y, 10).await;
    let e = upload(&mut c, upload_chunks(Rows::F32(&x), 4, &y, "t", 160))
        .await
        .unwrap_err();
    assert_reason(&e, Code::ResourceExhausted, "DATASET_LIMIT");
    assert_eq!(quota(&e).0, "--max-dataset-memory");
    assert_eq!(listed(&mut c).await.len(), 2);
    // Deleting one makes room again.
    c.delete_dataset(pb::DeleteDatasetRequest {
        dataset_id: first.dataset_id,
    })
    .await
    .unwrap();
    upload_f32(&mut c, &x, 4, &y, 10).await;
    // One declared larger than the whole cap is refused before any row is held.
    let (big_x, big_y) = blobs(400, 4, 2, 4);
    let e = upload(
        &mut c,
        upload_chunks(Rows::F32(&big_x), 4, &big_y, "t", 1 << 20),
    )
    .await
    .unwrap_err();
    assert_reason(&e, Code::ResourceExhausted, "DATASET_LIMIT");
    assert!(e.message().contains("8000 bytes"), "{}", e.message());
    srv.stop().await;

    // Without the flag, datasets may hold half of the memory budget.
    let srv = TestServer::with_config(capped(None, Some(6_000))).await;
    let mut c = srv.trainer();
    upload_f32(&mut c, &x, 4, &y, 10).await;
    let e = upload(&mut c, upload_chunks(Rows::F32(&x), 4, &y, "t", 160))
        .await
        .unwrap_err();
    assert_reason(&e, Code::ResourceExhausted, "DATASET_LIMIT");
    srv.stop().await;
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("datasets-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn persistent(dir: &Path) -> Config {
    Config {
        persist: Some(PersistConfig {
            dir: dir.to_path_buf(),
            every_steps: 0,
            interval: Duration::from_secs(3600),
        }),
        ..test_config()
    }
}

#[tokio::test]
async fn datasets_come_back_after_a_restart_and_a_delete_removes_the_file() {
    let dir = scratch("restart");
    let srv = TestServer::with_config(persistent(&dir)).await;
    let mut c = srv.trainer();
    let (x, y) = blobs(40, 5, 3, 5);
    let kept = upload_f32(&mut c, &x, 5, &y, 9).await;
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v) * 1.5).collect();
    let doomed = upload(&mut c, upload_chunks(Rows::F64(&x64), 5, &y, "d", 1 << 20))
        .await
        .unwrap();
    let file = |id: &str| dir.join("datasets").join(format!("{id}.safetensors"));
    assert!(file(&kept.dataset_id).is_file() && file(&doomed.dataset_id).is_file());
    c.delete_dataset(pb::DeleteDatasetRequest {
        dataset_id: doomed.dataset_id.clone(),
    })
    .await
    .unwrap();
    assert!(!file(&doomed.dataset_id).exists());
    srv.stop().await;

    // A damaged dataset file is moved aside; the intact one comes back whole.
    std::fs::write(
        dir.join("datasets")
            .join(format!("{}.safetensors", "ab".repeat(16))),
        b"junk",
    )
    .unwrap();
    let srv = TestServer::with_config(persistent(&dir)).await;
    let mut c = srv.trainer();
    assert_eq!(listed(&mut c).await, vec![kept.dataset_id.clone()]);
    let back = c
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: kept.dataset_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((back.rows, back.dim, &back.sha256), (40, 5, &kept.sha256));
    assert_eq!(back.bytes, kept.bytes);
    assert!(dir.join("datasets").join("corrupt").is_dir());
    srv.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
