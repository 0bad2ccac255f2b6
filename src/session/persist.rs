//! Sessions that survive restarts: each one kept in a state directory as its checkpoint
//! file (`<id>.safetensors`, the same file ExportModel sends), written atomically.
//!
//! When files are written: on create and import (before the call is answered), every
//! `every_steps` steps of a session (in the background), every `interval` for any session
//! whose step moved, and for all of them at graceful shutdown. A delete removes the file
//! before the session leaves memory. After a `kill -9` each session therefore comes back
//! at a consistent snapshot (one encode under the session's read lock) no older than
//! about one interval, and no file is ever torn: a write goes to a temporary file that is
//! fsynced and renamed (see [`crate::checkpoint::file`]).
//!
//! A save that fails (a full or read-only disk) is never papered over: the session is
//! marked *unsaved* with the reason, its changing calls are refused (see
//! [`SaveState::unsaved`]) until a later save of it
//! succeeds (the saver retries every `interval`), the count of unsaved sessions is
//! published (for health and the `backprop_unsaved_sessions` gauge), and a shutdown that
//! cannot save everything reports it. This is Redis's `stop-writes-on-bgsave-error`,
//! per session.
//!
//! Error messages name files relative to the state directory (they reach clients); the
//! absolute path is logged here, on the server.
//!
//! On start every file is decoded; one that does not decode is reported, moved into
//! `corrupt/` and skipped, so a damaged file never stops the server.
//!
//! The persister knows a session only through [`Persisted`] (its id, owner, step and a
//! snapshot) and keeps its own bookkeeping in the session's [`SaveState`], so the store
//! depends on this module and not the other way round.
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedRwLockReadGuard, watch};

use super::id::{Replica, SessionId};
use super::pool::ComputePool;
use super::record::Record;
use super::tenant::Tenant;
use crate::checkpoint::{self, file};
use crate::metrics::Metrics;
use crate::model::AnyModel;

/// The extension of a session file.
const EXTENSION: &str = "safetensors";
/// Where files that fail to decode at start are moved.
const CORRUPT_DIR: &str = "corrupt";
/// Metadata key holding the session id (checked against the file name on restore).
const KEY_ID: &str = "model_id";
/// Metadata key holding the owner's tenant name ("" without authentication).
const KEY_TENANT: &str = "tenant";

/// What the persister needs of a session (the store's `Session` provides it).
pub trait Persisted: Send + Sync + 'static {
    fn id(&self) -> &SessionId;
    /// The owner, written into the file so a restart gives the session back to them.
    fn tenant(&self) -> &Tenant;
    /// The step now, readable without the model's lock.
    fn step(&self) -> u64;
    fn save_state(&self) -> &SaveState;
    /// What is kept beside the model (history, metadata), written into the file with it.
    fn kept(&self) -> Record;
    /// Shared access to the model for one encode; must not count as a use of the
    /// session (saving never keeps a session from being reaped as idle).
    fn snapshot(&self) -> impl Future<Output = OwnedRwLockReadGuard<AnyModel>> + Send;
}

/// The persister's bookkeeping for one session, held by the session and changed only
/// here.
#[derive(Debug, Default)]
pub struct SaveState {
    /// Serializes writes of the session's file.
    lock: tokio::sync::Mutex<()>,
    /// Set when the session is deleted or reaped: no file may be written after that.
    deleted: AtomicBool,
    /// The step the file holds, and whether it has been written at all.
    persisted_step: AtomicU64,
    saved_once: AtomicBool,
    /// Something besides the step changed since the file was written (the metadata).
    changed: AtomicBool,
    /// Why the last save failed, while the session is unsaved (see the module doc). Set
    /// and cleared under `lock`; a std `Mutex` as it is never held across an `.await`.
    unsaved: Mutex<Option<String>>,
}

impl SaveState {
    /// The state of a session read from its file at `step`: already saved.
    pub fn on_disk(step: u64) -> Self {
        SaveState {
            persisted_step: AtomicU64::new(step),
            saved_once: AtomicBool::new(true),
            ..SaveState::default()
        }
    }

    /// Why the session's last save failed, if it is unsaved now; its changing calls are
    /// refused meanwhile.
    pub fn unsaved(&self) -> Option<String> {
        self.unsaved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Says that something the step does not count changed (a rename): the next save
    /// writes the file even at the same step.
    pub fn mark_changed(&self) {
        self.changed.store(true, Ordering::Release);
    }

    /// Whether a write of the file is in progress now.
    fn writing(&self) -> bool {
        self.lock.try_lock().is_err()
    }
}

/// Where and how often sessions are saved.
#[derive(Debug, Clone)]
pub struct PersistConfig {
    pub dir: PathBuf,
    /// Save a session in the background once it is this many steps past its file (0: only
    /// on the interval).
    pub every_steps: u64,
    /// Save every session whose step moved at least this often.
    pub interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Opening or listing the directory at start (reported to the operator, not a client).
    #[error("state dir {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    /// Writing or removing one session's file. The message names the file only (it may
    /// reach a client); the absolute path is in the server's log.
    #[error("{action} {file}: {source}")]
    File {
        action: &'static str,
        file: String,
        source: std::io::Error,
    },
    #[error("encoding the checkpoint: {0}")]
    Encode(String),
    /// A file of another replica's (ids carry their replica, `--replica-id`): this
    /// server would serve it under an id no client knows. Refused at start.
    #[error(
        "state dir {dir}: {file} belongs to {}, and this server is {here}: start it with \
         the --replica-id the directory was written with, or give it a state directory \
         of its own",
        owner.as_deref().map_or_else(|| "a server without --replica-id".to_string(), |o| format!("replica {o}"))
    )]
    OtherReplica {
        dir: String,
        file: String,
        owner: Option<String>,
        here: Replica,
    },
}

/// Why a file of the state directory was not restored.
pub(super) enum Unread {
    /// Damaged or not ours to read (set aside into `corrupt/`, logged).
    Corrupt(String),
    /// Another replica's: the whole directory is refused.
    Foreign(Option<String>),
}

impl From<String> for Unread {
    fn from(why: String) -> Self {
        Unread::Corrupt(why)
    }
}

/// The id a state-directory file is named after, with the word for what it holds.
pub(super) fn id_of(path: &Path, what: &str, replica: Replica) -> Result<SessionId, Unread> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parts = SessionId::parse(&stem).ok_or_else(|| format!("{stem:?} is not a {what} id"))?;
    parts.on(replica).map_err(Unread::Foreign)
}

/// The error for `path`, a file of replica `owner`'s in `dir`.
pub(super) fn foreign(
    dir: &Path,
    path: &Path,
    owner: Option<String>,
    here: Replica,
) -> PersistError {
    PersistError::OtherReplica {
        dir: dir.display().to_string(),
        file: file_name(path),
        owner,
        here,
    }
}

/// A restored session: its id, owner and model.
pub struct Restored {
    pub id: SessionId,
    /// The owner, by name (limits come from the caller's token at each call).
    pub tenant: Tenant,
    pub model: AnyModel,
    pub record: Record,
}

/// The state directory and the pool that encodes checkpoints off the async runtime.
#[derive(Clone)]
pub struct Persister {
    config: Arc<PersistConfig>,
    pool: ComputePool,
    metrics: Metrics,
    /// How many sessions are unsaved now (their last save failed); health follows it.
    /// Changed only under a session's persist lock, together with its `unsaved` slot.
    unsaved: Arc<watch::Sender<usize>>,
}

/// What a write did.
enum Wrote {
    /// The file now holds the session's state.
    File,
    /// The file already held this step.
    UpToDate,
    /// The session is being deleted: nothing may be written.
    Deleted,
}

impl Persister {
    /// Opens (creating if needed) the directory and clears unfinished writes.
    pub fn open(config: PersistConfig, pool: ComputePool) -> Result<Self, PersistError> {
        let io = |source| PersistError::Dir {
            path: config.dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&config.dir).map_err(io)?;
        for entry in std::fs::read_dir(&config.dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.to_string_lossy().ends_with(file::TEMP_SUFFIX) {
                tracing::info!(path = %path.display(), "removing an unfinished write");
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(Persister {
            config: Arc::new(config),
            pool,
            metrics: Metrics::disabled(),
            unsaved: Arc::new(watch::Sender::new(0)),
        })
    }

    /// Counts saves (`backprop_state_saves_total`, `backprop_state_save_seconds`,
    /// `backprop_unsaved_sessions`) there.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        metrics.unsaved_sessions(*self.unsaved.borrow());
        self.metrics = metrics;
        self
    }

    /// The number of unsaved sessions, now and as it changes.
    pub fn watch_unsaved(&self) -> watch::Receiver<usize> {
        self.unsaved.subscribe()
    }

    /// The number of unsaved sessions now.
    pub fn unsaved(&self) -> usize {
        *self.unsaved.borrow()
    }

    pub fn config(&self) -> &PersistConfig {
        &self.config
    }

    fn path_of(&self, id: &SessionId) -> PathBuf {
        self.config.dir.join(format!("{id}.{EXTENSION}"))
    }

    /// Decodes every session file. Files that fail are moved into `corrupt/` and logged;
    /// a file of another replica's than `replica` refuses the whole directory.
    pub fn restore(&self, replica: Replica) -> Result<Vec<Restored>, PersistError> {
        let dir = &self.config.dir;
        let io = |source| PersistError::Dir {
            path: dir.display().to_string(),
            source,
        };
        let mut restored = Vec::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == EXTENSION))
            .collect();
        paths.sort();
        for path in paths {
            match read_session(&path, replica) {
                Ok(r) => restored.push(r),
                Err(Unread::Corrupt(why)) => set_aside(dir, &path, &why),
                Err(Unread::Foreign(owner)) => return Err(foreign(dir, &path, owner, replica)),
            }
        }
        Ok(restored)
    }

    /// The first save of a new session (CreateModel, ImportModel), before it is
    /// acknowledged. A failure only refuses that call: the caller drops the session, and
    /// any file a half-failed write left (renamed, but the directory not synced) is
    /// removed so the session cannot come back at the next start.
    pub async fn save_new(&self, session: &impl Persisted) -> Result<(), PersistError> {
        let _writing = session.save_state().lock.lock().await;
        let start = std::time::Instant::now();
        let wrote = self.write(session).await;
        self.count(&wrote, start);
        if let Err(e) = &wrote {
            let path = self.path_of(session.id());
            tracing::error!(model_id = %session.id(), path = %path.display(), error = %e, "could not save a new session");
            session.save_state().deleted.store(true, Ordering::Release);
            let _ = tokio::task::spawn_blocking(move || file::remove_durably(&path)).await;
        }
        wrote.map(|_| ())
    }

    /// Writes the session's current state, unless the file already holds this step or
    /// the session is being deleted. Writes of one session are serialized, so an older
    /// snapshot never replaces a newer one. A failure marks the session unsaved (see the
    /// module doc); a success clears that.
    pub async fn save(&self, session: &impl Persisted) -> Result<(), PersistError> {
        let _writing = session.save_state().lock.lock().await;
        let start = std::time::Instant::now();
        let wrote = self.write(session).await;
        self.count(&wrote, start);
        match &wrote {
            Ok(Wrote::File | Wrote::UpToDate) => {
                self.mark(session, None);
            }
            Ok(Wrote::Deleted) => {}
            Err(e) => {
                let path = self.path_of(session.id());
                if self.mark(session, Some(e.to_string())) {
                    tracing::error!(
                        model_id = %session.id(), path = %path.display(), error = %e,
                        "saving the session failed; its changes are refused until a save succeeds"
                    );
                } else {
                    tracing::debug!(model_id = %session.id(), path = %path.display(), error = %e, "saving the session failed again");
                }
            }
        }
        wrote.map(|_| ())
    }

    fn count(&self, wrote: &Result<Wrote, PersistError>, start: std::time::Instant) {
        if let Ok(Wrote::File) | Err(_) = wrote {
            self.metrics.state_save(wrote.is_ok(), start.elapsed());
        }
    }

    /// Sets (`Some(reason)`) or clears the session's unsaved mark and keeps the count;
    /// returns whether the session just became unsaved. Called under its persist lock.
    fn mark(&self, session: &impl Persisted, reason: Option<String>) -> bool {
        let mut slot = session
            .save_state()
            .unsaved
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (was, now) = (slot.is_some(), reason.is_some());
        *slot = reason;
        drop(slot);
        if was != now {
            self.unsaved.send_modify(|n| {
                *n = if now { *n + 1 } else { n.saturating_sub(1) };
            });
            self.metrics.unsaved_sessions(*self.unsaved.borrow());
            if was {
                tracing::info!(model_id = %session.id(), "the session is saved again; its changes are accepted");
            }
        }
        !was && now
    }

    /// The body of [`save`](Self::save), under the session's persist lock.
    async fn write(&self, session: &impl Persisted) -> Result<Wrote, PersistError> {
        if session.save_state().deleted.load(Ordering::Acquire) {
            return Ok(Wrote::Deleted);
        }
        let state = session.save_state();
        if state.saved_once.load(Ordering::Acquire)
            && state.persisted_step.load(Ordering::Acquire) == session.step()
            && !state.changed.load(Ordering::Acquire)
        {
            return Ok(Wrote::UpToDate);
        }
        // Cleared before the record is read: a change made from here on marks it again,
        // and one this write misses is written by the next.
        let changed = state.changed.swap(false, Ordering::AcqRel);
        let written = self.encode_and_write(session).await;
        if written.is_err() && changed {
            state.changed.store(true, Ordering::Release);
        }
        written
    }

    async fn encode_and_write(&self, session: &impl Persisted) -> Result<Wrote, PersistError> {
        let guard = session.snapshot().await;
        let id = session.id().to_string();
        let tenant = session.tenant().name().to_string();
        let record = session.kept().to_metadata();
        let (step, bytes) = self
            .pool
            .run(move || {
                let mut meta = vec![(KEY_ID, &*id), (KEY_TENANT, &*tenant)];
                meta.extend(record.iter().map(|(k, v)| (*k, v.as_str())));
                let bytes = checkpoint::encode(&guard, &meta);
                (guard.step(), bytes)
            })
            .await
            .map_err(|e| PersistError::Encode(e.to_string()))?;
        let bytes = bytes.map_err(|e| PersistError::Encode(e.to_string()))?;
        let path = self.path_of(session.id());
        let file = file_name(&path);
        tokio::task::spawn_blocking(move || file::write_atomic(&path, &bytes))
            .await
            .map_err(|e| PersistError::Encode(e.to_string()))?
            .map_err(|source| PersistError::File {
                action: "writing",
                file,
                source,
            })?;
        session
            .save_state()
            .persisted_step
            .store(step, Ordering::Release);
        session
            .save_state()
            .saved_once
            .store(true, Ordering::Release);
        Ok(Wrote::File)
    }

    /// Removes the session's file (after any write in progress) and, from then on, lets
    /// no write of it start. If the file cannot be removed the session stays as it was
    /// (the caller keeps it) and the error says why; the absolute path is logged.
    pub async fn remove(&self, session: &impl Persisted) -> Result<(), PersistError> {
        session.save_state().deleted.store(true, Ordering::Release);
        let _writing = session.save_state().lock.lock().await;
        let path = self.path_of(session.id());
        let (file, shown) = (file_name(&path), path.display().to_string());
        let removed = tokio::task::spawn_blocking(move || {
            let r = file::remove_durably(&path);
            (r, path.exists())
        })
        .await;
        let (result, still_there) = match removed {
            Ok((r, exists)) => (r, exists),
            Err(e) => (Err(std::io::Error::other(e.to_string())), true),
        };
        match result {
            Ok(()) => {
                self.mark(session, None);
                Ok(())
            }
            Err(source) => {
                tracing::error!(model_id = %session.id(), path = %shown, error = %source, "could not remove a session file; the session stays");
                session.save_state().deleted.store(false, Ordering::Release);
                if !still_there {
                    // Unlinked but not synced: write it again at the next save.
                    session
                        .save_state()
                        .saved_once
                        .store(false, Ordering::Release);
                }
                Err(PersistError::File {
                    action: "removing",
                    file,
                    source,
                })
            }
        }
    }

    /// Undoes [`remove`](Self::remove) for a session that must stay after all (the
    /// reaper found it in use again): it is written again at the next save.
    pub(crate) fn keep(&self, session: &impl Persisted) {
        session
            .save_state()
            .saved_once
            .store(false, Ordering::Release);
        session.save_state().deleted.store(false, Ordering::Release);
    }

    /// Whether a session that just reached `step` is due a background save (and none of
    /// its writes is in progress already).
    pub fn due(&self, session: &impl Persisted, step: u64) -> bool {
        let every = self.config.every_steps;
        let state = session.save_state();
        every > 0
            && step >= state.persisted_step.load(Ordering::Acquire) + every
            && !state.writing()
    }
}

/// Moves a file of `dir` that does not decode into `dir/corrupt/` (with a time stamp) and
/// logs why; a file that cannot be moved is skipped, logged too.
pub(super) fn set_aside(dir: &Path, path: &Path, why: &str) {
    let aside = dir.join(CORRUPT_DIR);
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path.file_name().map_or_else(
        || "unnamed".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let target = aside.join(format!("{name}.{stamp}"));
    let moved = std::fs::create_dir_all(&aside).and_then(|()| std::fs::rename(path, &target));
    match moved {
        Ok(()) => tracing::error!(
            file = %path.display(), moved_to = %target.display(), reason = why,
            "a state file does not decode; moved aside, the server starts without it"
        ),
        Err(e) => tracing::error!(
            file = %path.display(), reason = why, error = %e,
            "a state file does not decode and could not be moved aside; skipped"
        ),
    }
}

/// The file's name, for messages (the directory stays in the server's log).
fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

fn read_session(path: &Path, replica: Replica) -> Result<Restored, Unread> {
    let id = id_of(path, "session", replica)?;
    let stem = id.to_string();
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let decoded = checkpoint::decode(&bytes).map_err(|e| e.to_string())?;
    match decoded.extra.get(KEY_ID) {
        Some(inside) if *inside == stem => Ok(Restored {
            id,
            tenant: Tenant::new(
                decoded.extra.get(KEY_TENANT).map_or("", String::as_str),
                None,
            ),
            record: Record::from_metadata(&decoded.extra).map_err(|(k, e)| format!("{k}: {e}"))?,
            model: decoded.model,
        }),
        other => Err(format!("the file is named {stem} but holds session {other:?}").into()),
    }
}
