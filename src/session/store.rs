//! The session store: every live model, each behind its own lock.
//!
//! The map itself sits behind a std `RwLock` that is held only to look up, insert or
//! remove an entry (never across an `.await`, never during math), so one slow session
//! never stalls another. Each session's model sits behind a tokio `RwLock`, which queues
//! waiters fairly: steps on one session apply in arrival order, reads (Forward, Backward,
//! Evaluate) of one session may run side by side.
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock as AsyncRwLock};
use tokio::time::Instant;

use super::about::{About, AboutError};
use super::budget::{Reservation, Reservations, UploadHold, UploadRefusal, Waiters};
use super::history::{EpochPoint, History, StepPoint};
use super::id::{Replica, SessionId};
use super::persist::{Persisted, Persister, Restored, SaveState};
use super::record::Record;
use super::tenant::Tenant;
use crate::fit::FitJob;
use crate::model::{AnyModel, ModelSpec};

/// Limits on what clients may hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Live sessions at most.
    pub max_sessions: usize,
    /// Parameters (scalars) per model at most.
    pub max_parameters: u64,
    /// A session unused for this long is dropped; `None` = never.
    pub idle_ttl: Option<Duration>,
    /// Bytes all sessions together may hold (parameters and optimizer state, see
    /// `ModelSpec::state_bytes`); CreateModel and ImportModel beyond it are refused.
    /// `None` = no budget.
    pub max_memory: Option<u64>,
    /// Estimated peak bytes one call may take, at most (`service::limits`); `None` = the
    /// whole memory budget (and no cap on a server without one).
    pub max_call_memory: Option<u64>,
    /// Calls that may wait for one session's lock at once (`budget::Waiters`).
    pub max_session_waiters: usize,
    /// Bytes all uploads in flight together may hold, at most (`budget::UploadHold`);
    /// `None` = [`DEFAULT_UPLOAD_SHARE`] of the memory budget. Also the largest
    /// checkpoint ImportModel takes.
    pub max_upload_memory: Option<u64>,
    /// Bytes all datasets together (and dataset uploads in flight) may hold, at most;
    /// `None` = [`DEFAULT_DATASET_SHARE`] of the memory budget (no cap without a budget).
    /// Datasets count in the memory budget too.
    pub max_dataset_memory: Option<u64>,
}

/// The fraction of the memory budget datasets may hold together when
/// `max_dataset_memory` is not set: half, so models and the calls that train them keep
/// the other half however much data is uploaded.
pub const DEFAULT_DATASET_SHARE: f64 = 0.5;

/// The fraction of the memory budget that uploads in flight may hold together when
/// `max_upload_memory` is not set. Half: an imported file must fit beside the model it
/// decodes into (about its size again), and the other half stays for every other call
/// however many uploads stall.
pub const DEFAULT_UPLOAD_SHARE: f64 = 0.5;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 100_000,
            max_parameters: 50_000_000,
            idle_ttl: None,
            max_memory: None,
            max_call_memory: None,
            max_session_waiters: super::budget::DEFAULT_MAX_SESSION_WAITERS,
            max_upload_memory: None,
            max_dataset_memory: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("model_id: no model {0:?} (never created, deleted, or dropped after being idle)")]
    NotFound(String),
    /// The id was made by another replica (or has no replica part where this server has
    /// one, or one where it has none): the call reached the wrong server. The service
    /// words the message (it names the routing header).
    #[error("{field}: {id} is not this replica's ({here}) but {}", owner.as_deref().unwrap_or("an id without a replica part"))]
    Elsewhere {
        field: &'static str,
        id: String,
        owner: Option<String>,
        here: Replica,
    },
    #[error("the server holds its maximum of {0} sessions; delete one first")]
    TooManySessions(usize),
    #[error(
        "tenant {tenant} holds its maximum of {limit} sessions (max_sessions); delete one first"
    )]
    TenantSessions { tenant: String, limit: usize },
    #[error(
        "tenant {tenant} may hold {limit} bytes of datasets (max_dataset_bytes); it holds \
         {held}, and this one needs {need}; delete one of its datasets first"
    )]
    TenantDatasets {
        tenant: String,
        limit: u64,
        held: u64,
        need: u64,
    },
    #[error("spec: the model has {got} parameters, more than this server's limit of {limit}")]
    TooManyParameters { got: u64, limit: u64 },
    /// How much is free is not said: it would let one tenant watch another's activity.
    #[error(
        "the server's memory budget ({budget} bytes, --max-memory) cannot hold {what} \
         ({need} bytes) beside what sessions and calls in flight hold now; {hint}"
    )]
    OverMemoryBudget {
        need: u64,
        budget: u64,
        what: &'static str,
        hint: &'static str,
    },
    #[error(
        "uploads in flight may hold {cap} bytes together (--max-upload-memory), which \
         cannot hold this upload ({need} bytes) beside the others now; retry later, or \
         import when fewer uploads are in flight"
    )]
    OverUploadShare { need: u64, cap: u64 },
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
    /// A name or label that cannot be kept (CreateModel, UpdateModel).
    #[error(transparent)]
    About(#[from] AboutError),
    /// The state directory could not be written (or a file removed); the change was not
    /// made. The reason names the file, never the directory (it reaches clients).
    #[error("the state directory could not be updated, nothing was changed: {0}")]
    Persist(String),
    #[error("dataset_id: no dataset {0:?} (never uploaded, deleted, or dropped after being idle)")]
    DatasetNotFound(String),
    /// How much is free is not said, as for the memory budget.
    #[error(
        "datasets may hold {cap} bytes together (--max-dataset-memory), which cannot hold \
         this one ({need} bytes) beside the others; delete a dataset first"
    )]
    OverDatasetShare { need: u64, cap: u64 },
    /// A fit trains the model: only it may change the model until it ends.
    #[error(
        "model_id {id}: a fit is training this model; changes are refused until it ends \
         (WatchFit follows it, CancelFit stops it)"
    )]
    FitRunning { id: String },
    /// The session's last save failed: it takes no changes until a save succeeds.
    #[error(
        "model_id {id}: the session's last save to the state directory failed ({reason}); \
         changes to it are refused until a save succeeds (retried in the background)"
    )]
    Unsaved { id: String, reason: String },
}

/// One live model.
pub struct Session {
    pub id: SessionId,
    /// Who created it; only they see it (every call is the anonymous tenant without auth).
    pub tenant: Tenant,
    /// Immutable for the life of the session, so readable without the lock.
    pub spec: ModelSpec,
    pub parameter_count: u64,
    model: Arc<AsyncRwLock<AnyModel>>,
    /// The step count, mirrored here after every update so listing needs no lock.
    step: AtomicU64,
    last_used: Mutex<Instant>,
    /// Calls holding or waiting for this session; the reaper skips busy sessions.
    in_use: AtomicUsize,
    /// The persister's bookkeeping of this session's file (see `persist`).
    save: SaveState,
    /// Calls waiting for the lock, bounded by the service (see `budget::Waiters`).
    pub waiters: Waiters,
    /// The model's running or last fit: while one runs only it may change the model.
    fit: Mutex<Option<Arc<FitJob>>>,
    /// Set when the session leaves the store (deleted or reaped): a fit on it stops.
    removed: AtomicBool,
    /// What happened to the model (see `history`); a std `Mutex`, never held across an
    /// `.await`.
    history: Mutex<History>,
    /// Its name, labels and the rest people see (see `about`); a std `Mutex` too.
    about: Mutex<About>,
    /// Serializes UpdateModel's changes, each until it is saved (see `relabel`).
    pub(super) about_change: tokio::sync::Mutex<()>,
}

impl Session {
    pub fn step(&self) -> u64 {
        self.step.load(Ordering::Acquire)
    }

    pub(crate) fn set_step(&self, step: u64) {
        self.step.store(step, Ordering::Release);
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

    /// Waits (in arrival order) for shared access to the model.
    pub async fn read(self: &Arc<Self>) -> SessionGuard<OwnedRwLockReadGuard<AnyModel>> {
        let _use = InUse::new(self);
        let guard = self.model.clone().read_owned().await;
        self.touch();
        SessionGuard { guard, _use }
    }

    /// Why the session's last save failed, if it is unsaved now.
    pub fn unsaved(&self) -> Option<String> {
        self.save.unsaved()
    }

    /// Waits (in arrival order) for exclusive access to the model, to change it. An
    /// unsaved session (its last save failed) is refused instead: a change that might be
    /// lost is never acknowledged. Checked once the lock is held, so a save that failed
    /// while the call waited counts.
    /// A model a fit trains is refused too (FitRunning), checked once the lock is held.
    pub async fn write(
        self: &Arc<Self>,
    ) -> Result<SessionGuard<OwnedRwLockWriteGuard<AnyModel>>, StoreError> {
        self.write_for(None).await
    }

    /// [`write`](Self::write) for the fit `job`, the one writer while it runs.
    pub async fn write_as_fit(
        self: &Arc<Self>,
        job: &Arc<FitJob>,
    ) -> Result<SessionGuard<OwnedRwLockWriteGuard<AnyModel>>, StoreError> {
        self.write_for(Some(job)).await
    }

    async fn write_for(
        self: &Arc<Self>,
        fit: Option<&Arc<FitJob>>,
    ) -> Result<SessionGuard<OwnedRwLockWriteGuard<AnyModel>>, StoreError> {
        let _use = InUse::new(self);
        let guard = self.model.clone().write_owned().await;
        self.touch();
        if let Some(reason) = self.unsaved() {
            return Err(StoreError::Unsaved {
                id: self.id.to_string(),
                reason,
            });
        }
        if let Some(running) = self.running_fit()
            && !fit.is_some_and(|f| Arc::ptr_eq(f, &running))
        {
            return Err(self.fit_running());
        }
        Ok(SessionGuard { guard, _use })
    }

    fn fit_running(&self) -> StoreError {
        StoreError::FitRunning {
            id: self.id.to_string(),
        }
    }

    /// The model's running or last fit.
    pub fn fit(&self) -> Option<Arc<FitJob>> {
        self.fit.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The fit that trains the model now, if any.
    pub fn running_fit(&self) -> Option<Arc<FitJob>> {
        self.fit().filter(|f| f.is_running())
    }

    /// Makes `job` the model's fit, unless another one runs (FitRunning).
    pub fn start_fit(&self, job: Arc<FitJob>) -> Result<(), StoreError> {
        let mut slot = self.fit.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|f| f.is_running()) {
            return Err(self.fit_running());
        }
        *slot = Some(job);
        Ok(())
    }

    /// Records a step (or a fit's epoch end) in the model's history.
    pub fn record(&self, f: impl FnOnce(&mut History)) {
        f(&mut self.history.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The model's latest step and fit epoch (its final metrics), without copying the
    /// rest of its history.
    pub fn last_points(&self) -> (Option<StepPoint>, Option<EpochPoint>) {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        (h.last_step().cloned(), h.last_epoch().cloned())
    }

    /// A copy of the model's history.
    pub fn history(&self) -> History {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What is kept beside the model, as its checkpoints carry it.
    pub fn kept(&self) -> Record {
        Record {
            history: self.history(),
            about: self.about(),
        }
    }

    /// A copy of the model's name, labels, creation time and dataset.
    pub fn about(&self) -> About {
        self.about.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes the model's metadata; the next save writes it even if no step was taken.
    pub fn edit_about(&self, f: impl FnOnce(&mut About)) {
        f(&mut self.about.lock().unwrap_or_else(|e| e.into_inner()));
        self.save.mark_changed();
    }

    /// Whether the session has left the store (deleted or reaped).
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }
}

impl Persisted for Session {
    fn id(&self) -> &SessionId {
        &self.id
    }

    fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    fn step(&self) -> u64 {
        Session::step(self)
    }

    fn save_state(&self) -> &SaveState {
        &self.save
    }

    fn kept(&self) -> Record {
        Session::kept(self)
    }

    /// Unlike [`read`](Session::read) it does not count as a use.
    fn snapshot(&self) -> impl Future<Output = OwnedRwLockReadGuard<AnyModel>> + Send {
        self.model.clone().read_owned()
    }
}

impl Session {
    fn new(
        id: SessionId,
        tenant: Tenant,
        model: AnyModel,
        save: SaveState,
        record: Record,
    ) -> Self {
        Session {
            id,
            tenant,
            spec: model.spec().clone(),
            parameter_count: model.parameter_count() as u64,
            step: AtomicU64::new(model.step()),
            model: Arc::new(AsyncRwLock::new(model)),
            last_used: Mutex::new(Instant::now()),
            in_use: AtomicUsize::new(0),
            save,
            waiters: Waiters::default(),
            fit: Mutex::new(None),
            removed: AtomicBool::new(false),
            history: Mutex::new(record.history),
            about: Mutex::new(record.about),
            about_change: tokio::sync::Mutex::new(()),
        }
    }
}

/// Marks a session in use from before its lock is requested until the guard drops.
struct InUse(Arc<Session>);

impl InUse {
    fn new(s: &Arc<Session>) -> Self {
        s.in_use.fetch_add(1, Ordering::AcqRel);
        InUse(s.clone())
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A lock on a session's model that can be moved to a compute thread.
pub struct SessionGuard<G> {
    pub guard: G,
    _use: InUse,
}

/// A cheap, cloneable handle to the store.
#[derive(Clone)]
pub struct SessionStore {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    sessions: RwLock<HashMap<SessionId, Arc<Session>>>,
    pub(super) limits: Limits,
    /// The replica whose ids this store makes and holds (`--replica-id`).
    pub(super) replica: Replica,
    /// Keeps sessions in a state directory, when the server was given one.
    pub(super) persister: Option<Persister>,
    /// Sum of `state_bytes` over live sessions and of the datasets' bytes, for the memory
    /// budget. Changed only under a map's write lock, so admission cannot race past the
    /// budget.
    pub(super) bytes_held: AtomicU64,
    /// Bytes calls in flight reserved against the same budget (see `budget`).
    pub(super) reservations: Reservations,
    /// Bytes uploads in flight hold, within their share of the budget.
    uploads: Reservations,
    /// The datasets (see `session::datasets`).
    pub(super) datasets: super::datasets::Datasets,
}

impl SessionStore {
    /// A store in memory only, on no named replica.
    pub fn new(limits: Limits) -> Self {
        Self::on(Replica::default(), limits, None)
    }

    /// A store on `replica` that keeps every session in `persister`'s directory, if
    /// given.
    pub fn on(replica: Replica, limits: Limits, persister: Option<Persister>) -> Self {
        SessionStore {
            shared: Arc::new(Shared {
                sessions: RwLock::new(HashMap::new()),
                limits,
                replica,
                persister,
                bytes_held: AtomicU64::new(0),
                reservations: Reservations::default(),
                uploads: Reservations::default(),
                datasets: Default::default(),
            }),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// The replica this store's ids name.
    pub fn replica(&self) -> Replica {
        self.shared.replica
    }

    /// The key of `id` (already checked to be of an id's shape, else NotFound `missing`)
    /// if it is this replica's; an id made elsewhere is [`StoreError::Elsewhere`].
    pub(super) fn key(
        &self,
        field: &'static str,
        id: &str,
        missing: impl FnOnce() -> StoreError,
    ) -> Result<SessionId, StoreError> {
        let parts = SessionId::parse(id).ok_or_else(missing)?;
        parts
            .on(self.shared.replica)
            .map_err(|owner| StoreError::Elsewhere {
                field,
                id: id.to_string(),
                owner,
                here: self.shared.replica,
            })
    }

    /// Checks a spec against the limits before any memory is spent on it.
    pub fn admit(&self, spec: &ModelSpec, tenant: &Tenant) -> Result<(), StoreError> {
        let got = spec.parameter_count().unwrap_or(u64::MAX);
        let limit = self.shared.limits.max_parameters;
        if got > limit {
            return Err(StoreError::TooManyParameters { got, limit });
        }
        if self.len() >= self.shared.limits.max_sessions {
            return Err(StoreError::TooManySessions(self.shared.limits.max_sessions));
        }
        check_tenant_limit(&self.read_map(), tenant)?;
        self.fits_budget(spec)
    }

    /// Bytes live sessions hold (parameters and optimizer state).
    pub fn bytes_held(&self) -> u64 {
        self.shared.bytes_held.load(Ordering::Acquire)
    }

    fn fits_budget(&self, spec: &ModelSpec) -> Result<(), StoreError> {
        let Some(budget) = self.shared.limits.max_memory else {
            return Ok(());
        };
        let need = spec.state_bytes().unwrap_or(u64::MAX);
        let in_use = self.bytes_held() + self.shared.reservations.reserved();
        if need > budget.saturating_sub(in_use) {
            return Err(StoreError::OverMemoryBudget {
                need,
                budget,
                what: "this model",
                hint: "delete a session or ask for a smaller model",
            });
        }
        Ok(())
    }

    /// Reserves `need` bytes of the memory budget for a call in flight, until the
    /// returned guard drops; without a budget the guard holds nothing.
    pub fn reserve(&self, need: u64) -> Result<Reservation, StoreError> {
        let Some(budget) = self.shared.limits.max_memory else {
            return Ok(Reservation::unlimited(need));
        };
        self.shared
            .reservations
            .try_reserve(need, self.bytes_held(), budget)
            .ok_or(StoreError::OverMemoryBudget {
                need,
                budget,
                what: "this call's estimated peak",
                hint: "retry later, or send a smaller batch",
            })
    }

    /// An upload's hold, empty: it grows with [`SessionStore::grow_upload`] as chunks
    /// arrive.
    pub fn start_upload(&self) -> UploadHold {
        let empty = |r: &Reservations| r.try_reserve(0, 0, u64::MAX).expect("0 bytes fit");
        UploadHold::new(
            empty(&self.shared.reservations),
            empty(&self.shared.uploads),
        )
    }

    /// Grows `upload` by `more` bytes, or refuses with RESOURCE_EXHAUSTED when the
    /// uploads' share or the budget cannot hold them now. Uploads hold what has arrived
    /// against both while the rest arrives.
    pub fn grow_upload(&self, upload: &mut UploadHold, more: u64) -> Result<(), StoreError> {
        let Some(budget) = self.shared.limits.max_memory else {
            return Ok(());
        };
        let cap = self.upload_cap(budget);
        match upload.try_grow(more, self.bytes_held(), budget, cap) {
            Ok(()) => Ok(()),
            Err(UploadRefusal::Share) => Err(StoreError::OverUploadShare {
                need: upload.bytes() + more,
                cap,
            }),
            Err(UploadRefusal::Budget) => Err(StoreError::OverMemoryBudget {
                need: upload.bytes() + more,
                budget,
                what: "this upload",
                hint: "retry later, or import when fewer uploads are in flight",
            }),
        }
    }

    /// What uploads in flight may hold together under `budget`.
    fn upload_cap(&self, budget: u64) -> u64 {
        self.shared
            .limits
            .max_upload_memory
            .unwrap_or((budget as f64 * DEFAULT_UPLOAD_SHARE) as u64)
            .min(budget)
    }

    /// Bytes calls in flight hold against the memory budget now.
    pub fn bytes_reserved(&self) -> u64 {
        self.shared.reservations.reserved()
    }

    /// The largest checkpoint file ImportModel accepts, and the flag that sets it: a
    /// model at the parameter limit, in f64, with Adam's two state slots, plus room for
    /// the header; at most what uploads may hold.
    pub fn max_checkpoint_bytes(&self) -> (u64, &'static str) {
        let limits = &self.shared.limits;
        let most = limits.max_parameters.saturating_mul(8 * 3);
        let most = most.saturating_add(16 << 20);
        match limits.max_memory.map(|budget| self.upload_cap(budget)) {
            Some(cap) if cap < most => (cap, "--max-upload-memory"),
            _ => (most, "--max-parameters"),
        }
    }

    /// Adds a model under a fresh id, owned by `tenant`, and, with a state directory,
    /// saves it before returning (a session is acknowledged only once it is on disk).
    pub async fn insert(
        &self,
        model: AnyModel,
        tenant: &Tenant,
        record: Record,
    ) -> Result<Arc<Session>, StoreError> {
        let id = SessionId::random(self.shared.replica)
            .map_err(|e| StoreError::Random(e.to_string()))?;
        let session = Arc::new(Session::new(
            id,
            tenant.clone(),
            model,
            SaveState::default(),
            record,
        ));
        {
            let mut map = self.write_map();
            if map.len() >= self.shared.limits.max_sessions {
                return Err(StoreError::TooManySessions(self.shared.limits.max_sessions));
            }
            check_tenant_limit(&map, tenant)?;
            self.fits_budget(&session.spec)?;
            self.hold(&session, true);
            map.insert(id, session.clone());
        }
        if let Some(p) = &self.shared.persister
            && let Err(e) = p.save_new(session.as_ref()).await
        {
            self.detach(&session);
            return Err(StoreError::Persist(e.to_string()));
        }
        Ok(session)
    }

    /// Puts back sessions read from the state directory, under their own ids. They are
    /// already on disk at their step. Limits are not applied: nothing saved is dropped.
    pub fn restore(&self, restored: Vec<Restored>) -> usize {
        let mut map = self.write_map();
        let n = restored.len();
        for r in restored {
            let save = SaveState::on_disk(r.model.step());
            let session = Arc::new(Session::new(r.id, r.tenant, r.model, save, r.record));
            self.hold(&session, true);
            map.insert(r.id, session);
        }
        n
    }

    /// Called after a session's step moved: with a state directory, saves it in the
    /// background once it is `every_steps` past its file.
    pub fn updated(&self, session: &Arc<Session>, step: u64) {
        let Some(p) = &self.shared.persister else {
            return;
        };
        if p.due(session.as_ref(), step) {
            let (p, session) = (p.clone(), session.clone());
            // A failure marks the session unsaved and is logged by the persister.
            tokio::spawn(async move { p.save(session.as_ref()).await });
        }
    }

    /// Saves every session whose step moved since its file was written (and retries the
    /// unsaved ones); returns how many failed. Used on the interval and at shutdown.
    pub async fn save_all(&self) -> usize {
        let Some(p) = &self.shared.persister else {
            return 0;
        };
        let mut failed = 0;
        let all: Vec<Arc<Session>> = self.read_map().values().cloned().collect();
        for session in all {
            if p.save(session.as_ref()).await.is_err() {
                failed += 1;
            }
        }
        failed
    }

    /// Sessions whose last save failed, now and as it changes; `None` without a state
    /// directory.
    pub fn watch_unsaved(&self) -> Option<tokio::sync::watch::Receiver<usize>> {
        self.shared.persister.as_ref().map(Persister::watch_unsaved)
    }

    /// Sessions whose last save failed.
    pub fn unsaved(&self) -> usize {
        self.shared.persister.as_ref().map_or(0, Persister::unsaved)
    }

    /// Saves changed sessions every `interval` until the returned guard drops.
    pub fn spawn_saver(&self) -> ReaperGuard {
        let Some(p) = &self.shared.persister else {
            return ReaperGuard(None);
        };
        let store = self.clone();
        let period = p.config().interval.max(Duration::from_millis(10));
        ReaperGuard(Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                store.save_all().await;
            }
        })))
    }

    /// The session `id` if `tenant` owns it; another tenant's session is NotFound, just
    /// like an unknown id, so its existence does not leak.
    pub fn get(&self, id: &str, tenant: &Tenant) -> Result<Arc<Session>, StoreError> {
        let missing = || StoreError::NotFound(id.to_string());
        let key = self.key("model_id", id, missing)?;
        self.read_map()
            .get(&key)
            .filter(|s| s.tenant == *tenant)
            .cloned()
            .ok_or_else(missing)
    }

    /// Removes the session `id` if `tenant` owns it (else NotFound, as for
    /// [`get`](Self::get)). With a state directory the file goes first: if it cannot be
    /// removed the session stays, served as before, and the error says why; so the file
    /// and the session are either both gone or both there.
    pub async fn remove(&self, id: &str, tenant: &Tenant) -> Result<Arc<Session>, StoreError> {
        let session = self.get(id, tenant)?;
        if let Some(p) = &self.shared.persister {
            p.remove(session.as_ref())
                .await
                .map_err(|e| StoreError::Persist(e.to_string()))?;
        }
        // A concurrent delete may have taken it meanwhile: only one of them answers OK.
        if !self.detach(&session) {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(session)
    }

    /// Takes this very session out of the map (and the budget); whether it was there.
    fn detach(&self, session: &Arc<Session>) -> bool {
        let mut map = self.write_map();
        if !map
            .get(&session.id)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            return false;
        }
        map.remove(&session.id);
        session.removed.store(true, Ordering::Release);
        self.hold(session, false);
        true
    }

    pub fn len(&self) -> usize {
        self.read_map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parameters (scalars) held by all sessions together.
    pub fn parameters_held(&self) -> u64 {
        self.read_map().values().map(|s| s.parameter_count).sum()
    }

    /// Every session `tenant` owns, in no particular order.
    pub fn list(&self, tenant: &Tenant) -> Vec<Arc<Session>> {
        self.read_map()
            .values()
            .filter(|s| s.tenant == *tenant)
            .cloned()
            .collect()
    }

    /// Drops every session idle for longer than the TTL and not in use; returns how many.
    /// With a state directory a session's file goes first, as for a delete: one whose file
    /// cannot be removed stays (and is tried again at the next round).
    pub async fn reap_idle(&self) -> usize {
        let Some(ttl) = self.shared.limits.idle_ttl else {
            return 0;
        };
        let idle = |s: &Session| {
            s.in_use.load(Ordering::Acquire) == 0 && s.idle_for() > ttl && s.running_fit().is_none()
        };
        let candidates: Vec<Arc<Session>> = self
            .read_map()
            .values()
            .filter(|s| idle(s))
            .cloned()
            .collect();
        let mut reaped = 0;
        for s in candidates {
            if let Some(p) = &self.shared.persister {
                // Logged (with the path) by the persister; the session stays.
                if p.remove(s.as_ref()).await.is_err() {
                    continue;
                }
                if !idle(&s) {
                    // A call arrived while the file went: keep the session, write it again.
                    p.keep(s.as_ref());
                    continue;
                }
            }
            if self.detach(&s) {
                reaped += 1;
            }
        }
        reaped
    }

    /// Runs [`reap_idle`](Self::reap_idle) periodically until the returned guard drops.
    pub fn spawn_reaper(&self) -> ReaperGuard {
        let Some(ttl) = self.shared.limits.idle_ttl else {
            return ReaperGuard(None);
        };
        let store = self.clone();
        let period = (ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
        ReaperGuard(Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let n = store.reap_idle().await;
                if n > 0 {
                    tracing::info!(dropped = n, "dropped idle sessions");
                }
                let n = store.reap_idle_datasets().await;
                if n > 0 {
                    tracing::info!(dropped = n, "dropped idle datasets");
                }
            }
        })))
    }

    /// Counts a session's bytes in (`true`) or out of the budget.
    fn hold(&self, session: &Session, add: bool) {
        let bytes = session.spec.state_bytes().unwrap_or(0);
        if add {
            self.shared.bytes_held.fetch_add(bytes, Ordering::AcqRel);
        } else {
            self.shared.bytes_held.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    // A poisoned map lock only means a thread panicked while holding it; the map itself
    // is always consistent (every mutation is a single insert/remove/retain).
    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SessionId, Arc<Session>>> {
        self.shared
            .sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SessionId, Arc<Session>>> {
        self.shared
            .sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// A tenant with a session limit may add one more while it holds fewer. Counted on the
/// map (O(sessions), under the lock the caller holds), and only for tenants with a limit.
fn check_tenant_limit(
    map: &HashMap<SessionId, Arc<Session>>,
    tenant: &Tenant,
) -> Result<(), StoreError> {
    let Some(limit) = tenant.max_sessions() else {
        return Ok(());
    };
    if map.values().filter(|s| s.tenant == *tenant).count() >= limit {
        return Err(StoreError::TenantSessions {
            tenant: tenant.to_string(),
            limit,
        });
    }
    Ok(())
}

/// Stops the idle reaper when dropped.
pub struct ReaperGuard(Option<tokio::task::JoinHandle<()>>);

impl Drop for ReaperGuard {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}
