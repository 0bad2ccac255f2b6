//! Datasets in the store: each owned by the tenant that uploaded it (another tenant gets
//! NotFound, as for sessions), counted in the memory budget and within their own cap
//! (`Limits::max_dataset_memory`), kept in the state directory's `datasets/` folder
//! (written atomically before the upload is acknowledged, restored on start, removed
//! before a delete is), and dropped by the idle reaper under the sessions' rule: unused
//! for the TTL and not in use (a fit holds its dataset while it runs).
//!
//! A dataset is immutable, so a fit takes a reference to its data and reads it without
//! any lock; deleting a dataset a fit is reading frees it when the fit ends.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::budget::{Reservations, UploadHold, UploadRefusal};
use super::id::{Replica, SessionId};
use super::page::Listed;
use super::persist::{PersistError, Unread, foreign, id_of};
use super::store::{SessionStore, StoreError};
use super::tenant::Tenant;
use crate::checkpoint::file;
use crate::dataset::{self, Dataset};

/// The state directory's folder of dataset files.
pub const DATASET_DIR: &str = "datasets";
const EXTENSION: &str = "safetensors";
const KEY_ID: &str = "dataset_id";
const KEY_TENANT: &str = "tenant";

/// One dataset in the store.
pub struct StoredDataset {
    pub id: SessionId,
    pub tenant: Tenant,
    /// Shared with the fits that read it; more than one holder = in use.
    pub data: Arc<Dataset>,
    last_used: Mutex<Instant>,
}

impl StoredDataset {
    fn new(id: SessionId, tenant: Tenant, data: Dataset) -> Self {
        StoredDataset {
            id,
            tenant,
            data: Arc::new(data),
            last_used: Mutex::new(Instant::now()),
        }
    }

    pub fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    fn in_use(&self) -> bool {
        Arc::strong_count(&self.data) > 1
    }
}

impl Listed for StoredDataset {
    fn listed_id(&self) -> SessionId {
        self.id
    }
}

/// The store's datasets and what they hold.
#[derive(Default)]
pub(super) struct Datasets {
    map: RwLock<HashMap<SessionId, Arc<StoredDataset>>>,
    /// Bytes the datasets hold (also in the store's `bytes_held`).
    bytes: AtomicU64,
    /// Bytes dataset uploads in flight hold, within the datasets' cap.
    uploads: Reservations,
}

impl Datasets {
    // A poisoned lock only means a thread panicked holding it; every mutation is one
    // insert or remove, so the map is consistent.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SessionId, Arc<StoredDataset>>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SessionId, Arc<StoredDataset>>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl SessionStore {
    fn datasets(&self) -> &Datasets {
        &self.shared.datasets
    }

    /// The datasets' cap: the flag, else a share of the memory budget, else none.
    pub fn dataset_cap(&self) -> Option<u64> {
        let limits = &self.shared.limits;
        limits.max_dataset_memory.or_else(|| {
            limits
                .max_memory
                .map(|b| (b as f64 * super::store::DEFAULT_DATASET_SHARE) as u64)
        })
    }

    /// Bytes the datasets hold now.
    pub fn dataset_bytes(&self) -> u64 {
        self.datasets().bytes.load(Ordering::Acquire)
    }

    /// Datasets in the store.
    pub fn dataset_count(&self) -> usize {
        self.datasets().read().len()
    }

    /// An upload of a dataset that will hold `declared` bytes: refused at once when that
    /// is more than the datasets' cap or the whole budget (it could never fit); else an
    /// empty hold that grows with [`grow_dataset_upload`](Self::grow_dataset_upload).
    pub fn start_dataset_upload(
        &self,
        declared: u64,
        tenant: &Tenant,
    ) -> Result<UploadHold, StoreError> {
        self.check_tenant_datasets(&self.datasets().read(), tenant, declared)?;
        if let Some(cap) = self.dataset_cap()
            && declared > cap
        {
            return Err(StoreError::OverDatasetShare {
                need: declared,
                cap,
            });
        }
        if let Some(budget) = self.shared.limits.max_memory
            && declared > budget
        {
            return Err(StoreError::OverMemoryBudget {
                need: declared,
                budget,
                what: "this dataset",
                hint: "upload a smaller dataset",
            });
        }
        let empty = |r: &Reservations| r.try_reserve(0, 0, u64::MAX).expect("0 bytes fit");
        Ok(UploadHold::new(
            empty(&self.shared.reservations),
            empty(&self.datasets().uploads),
        ))
    }

    /// Grows a dataset upload's hold by `more` bytes, or refuses with RESOURCE_EXHAUSTED
    /// when the datasets' cap (beside the datasets held and the other uploads) or the
    /// budget cannot hold them now.
    pub fn grow_dataset_upload(&self, up: &mut UploadHold, more: u64) -> Result<(), StoreError> {
        let budget = self.shared.limits.max_memory.unwrap_or(u64::MAX);
        let cap = self.dataset_cap().unwrap_or(u64::MAX);
        let share = (self.dataset_bytes(), cap);
        match up.try_grow_beside(more, self.bytes_held(), budget, share) {
            Ok(()) => Ok(()),
            Err(UploadRefusal::Share) => Err(StoreError::OverDatasetShare {
                need: up.bytes() + more,
                cap,
            }),
            Err(UploadRefusal::Budget) => Err(StoreError::OverMemoryBudget {
                need: up.bytes() + more,
                budget,
                what: "this dataset upload",
                hint: "retry later, or delete a dataset or a session",
            }),
        }
    }

    /// Adds an uploaded dataset under a fresh id, owned by `tenant`; its bytes move from
    /// the upload's hold to the store. With a state directory its file is written
    /// before this returns (a dataset is acknowledged only once it is on disk).
    pub async fn insert_dataset(
        &self,
        data: Dataset,
        tenant: &Tenant,
        hold: UploadHold,
    ) -> Result<Arc<StoredDataset>, StoreError> {
        let id =
            SessionId::random(self.replica()).map_err(|e| StoreError::Random(e.to_string()))?;
        let stored = Arc::new(StoredDataset::new(id, tenant.clone(), data));
        if let Some(dir) = self.dataset_dir() {
            let (path, d) = (dataset_path(&dir, &id), stored.data.clone());
            let (id_text, owner) = (id.to_string(), tenant.name().to_string());
            let wrote = tokio::task::spawn_blocking(move || {
                let bytes = dataset::file::encode(&d, &[(KEY_ID, &id_text), (KEY_TENANT, &owner)])
                    .map_err(std::io::Error::other)?;
                std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
                file::write_atomic(&path, &bytes)
            })
            .await
            .map_err(|e| StoreError::Persist(e.to_string()))?;
            if let Err(e) = wrote {
                tracing::error!(dataset_id = %id, error = %e, "could not save a new dataset");
                return Err(StoreError::Persist(format!(
                    "writing {DATASET_DIR}/{id}.{EXTENSION}: {e}"
                )));
            }
        }
        {
            // Checked again where it counts: uploads of one tenant may run side by side.
            let mut map = self.datasets().write();
            if let Err(e) = self.check_tenant_datasets(&map, tenant, stored.data.bytes()) {
                drop(map);
                if let Some(dir) = self.dataset_dir() {
                    let _ = std::fs::remove_file(dataset_path(&dir, &id));
                }
                return Err(e);
            }
            self.hold_dataset(&stored, true);
            map.insert(id, stored.clone());
        }
        drop(hold);
        Ok(stored)
    }

    /// Refuses a dataset of `need` bytes that `tenant`'s cap (`max_dataset_bytes`)
    /// cannot hold beside the tenant's datasets in `map`.
    fn check_tenant_datasets(
        &self,
        map: &HashMap<SessionId, Arc<StoredDataset>>,
        tenant: &Tenant,
        need: u64,
    ) -> Result<(), StoreError> {
        let Some(limit) = tenant.max_dataset_bytes() else {
            return Ok(());
        };
        let held: u64 = map
            .values()
            .filter(|d| d.tenant == *tenant)
            .map(|d| d.data.bytes())
            .sum();
        if held.saturating_add(need) > limit {
            return Err(StoreError::TenantDatasets {
                tenant: tenant.to_string(),
                limit,
                held,
                need,
            });
        }
        Ok(())
    }

    /// Puts back the datasets of the state directory (none without one); returns how
    /// many, or refuses the directory if it holds another replica's dataset. Blocking
    /// (reads and checks every file): run it off the async runtime.
    pub fn restore_datasets(&self) -> Result<usize, PersistError> {
        let Some(dir) = self.dataset_dir() else {
            return Ok(0);
        };
        let mut n = 0;
        for (id, tenant, data) in read_all(&dir, self.replica())? {
            let stored = Arc::new(StoredDataset::new(id, tenant, data));
            self.hold_dataset(&stored, true);
            self.datasets().write().insert(id, stored);
            n += 1;
        }
        Ok(n)
    }

    /// The dataset `id` if `tenant` owns it (another tenant's is NotFound, like an
    /// unknown id); counts as a use.
    pub fn get_dataset(&self, id: &str, tenant: &Tenant) -> Result<Arc<StoredDataset>, StoreError> {
        let missing = || StoreError::DatasetNotFound(id.to_string());
        let key = self.key("dataset_id", id, missing)?;
        let found = self
            .datasets()
            .read()
            .get(&key)
            .filter(|d| d.tenant == *tenant)
            .cloned()
            .ok_or_else(missing)?;
        found.touch();
        Ok(found)
    }

    /// Every dataset `tenant` owns, in no particular order.
    pub fn list_datasets(&self, tenant: &Tenant) -> Vec<Arc<StoredDataset>> {
        self.datasets()
            .read()
            .values()
            .filter(|d| d.tenant == *tenant)
            .cloned()
            .collect()
    }

    /// Removes the dataset `id` if `tenant` owns it; with a state directory its file goes
    /// first (if it cannot be removed the dataset stays and the error says why).
    pub async fn remove_dataset(&self, id: &str, tenant: &Tenant) -> Result<(), StoreError> {
        let d = self.get_dataset(id, tenant)?;
        self.drop_dataset(&d)
            .await
            .map_err(|e| StoreError::Persist(e.to_string()))?;
        if !self.detach_dataset(&d) {
            return Err(StoreError::DatasetNotFound(id.to_string()));
        }
        Ok(())
    }

    /// Drops every dataset idle for longer than the TTL and not read by a fit; returns
    /// how many.
    pub async fn reap_idle_datasets(&self) -> usize {
        let Some(ttl) = self.shared.limits.idle_ttl else {
            return 0;
        };
        let idle = |d: &StoredDataset| !d.in_use() && d.idle_for() > ttl;
        let candidates: Vec<_> = self
            .datasets()
            .read()
            .values()
            .filter(|d| idle(d))
            .cloned()
            .collect();
        let mut reaped = 0;
        for d in candidates {
            if self.drop_dataset(&d).await.is_ok() && self.detach_dataset(&d) {
                reaped += 1;
            }
        }
        reaped
    }

    /// Removes the dataset's file, if there is a state directory.
    async fn drop_dataset(&self, d: &StoredDataset) -> std::io::Result<()> {
        let Some(dir) = self.dataset_dir() else {
            return Ok(());
        };
        let path = dataset_path(&dir, &d.id);
        let id = d.id;
        let removed = tokio::task::spawn_blocking(move || file::remove_durably(&path))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        if let Err(e) = &removed {
            tracing::error!(dataset_id = %id, error = %e, "could not remove a dataset file; the dataset stays");
        }
        removed.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("removing {DATASET_DIR}/{id}.{EXTENSION}: {e}"),
            )
        })
    }

    /// Takes this very dataset out of the map and the budget; whether it was there.
    fn detach_dataset(&self, d: &Arc<StoredDataset>) -> bool {
        let mut map = self.datasets().write();
        if !map.get(&d.id).is_some_and(|x| Arc::ptr_eq(x, d)) {
            return false;
        }
        map.remove(&d.id);
        drop(map);
        self.hold_dataset(d, false);
        true
    }

    /// Counts a dataset's bytes in (`true`) or out of the budget and the datasets' share.
    fn hold_dataset(&self, d: &StoredDataset, add: bool) {
        let bytes = d.data.bytes();
        for counter in [&self.shared.bytes_held, &self.datasets().bytes] {
            if add {
                counter.fetch_add(bytes, Ordering::AcqRel);
            } else {
                counter.fetch_sub(bytes, Ordering::AcqRel);
            }
        }
    }

    fn dataset_dir(&self) -> Option<PathBuf> {
        self.shared
            .persister
            .as_ref()
            .map(|p| p.config().dir.join(DATASET_DIR))
    }
}

fn dataset_path(dir: &Path, id: &SessionId) -> PathBuf {
    dir.join(format!("{id}.{EXTENSION}"))
}

/// Every dataset file in `dir` that decodes, with its id and owner; the others are
/// logged and moved into `dir/corrupt/`, so a damaged file never stops the server. A
/// file of another replica's refuses the directory.
fn read_all(
    dir: &Path,
    replica: Replica,
) -> Result<Vec<(SessionId, Tenant, Dataset)>, PersistError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    // An unfinished write (a crash mid-upload) was never acknowledged.
    for p in paths
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(file::TEMP_SUFFIX))
    {
        let _ = std::fs::remove_file(p);
    }
    paths.retain(|p| p.is_file() && p.extension().is_some_and(|e| e == EXTENSION));
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        match read_one(&path, replica) {
            Ok(d) => out.push(d),
            Err(Unread::Corrupt(why)) => super::persist::set_aside(dir, &path, &why),
            Err(Unread::Foreign(owner)) => return Err(foreign(dir, &path, owner, replica)),
        }
    }
    Ok(out)
}

fn read_one(path: &Path, replica: Replica) -> Result<(SessionId, Tenant, Dataset), Unread> {
    let id = id_of(path, "dataset", replica)?;
    let stem = id.to_string();
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (data, extra) = dataset::file::decode(&bytes)?;
    match extra.get(KEY_ID) {
        Some(inside) if *inside == stem => {
            let tenant = Tenant::new(extra.get(KEY_TENANT).map_or("", String::as_str), None);
            Ok((id, tenant, data))
        }
        other => Err(format!("the file is named {stem} but holds dataset {other:?}").into()),
    }
}
