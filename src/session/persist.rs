//! Sessions that survive restarts: each one kept in a state directory as its checkpoint
//! file (`<id>.safetensors`, the same file ExportModel sends), written atomically.
//!
//! When files are written: on create and import (before the call is answered), every
//! `every_steps` steps of a session (in the background), every `interval` for any session
//! whose step moved, and for all of them at graceful shutdown. A delete removes the file
//! before it is answered. After a `kill -9` each session therefore comes back at a
//! consistent snapshot (one encode under the session's read lock) no older than about one
//! interval, and no file is ever torn: a write goes to a temporary file that is fsynced
//! and renamed (see [`crate::checkpoint::file`]).
//!
//! On start every file is decoded; one that does not decode is reported, moved into
//! `corrupt/` and skipped, so a damaged file never stops the server.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::id::SessionId;
use super::pool::ComputePool;
use super::store::Session;
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
    #[error("state dir {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("encoding the checkpoint: {0}")]
    Encode(String),
}

/// A restored session: its id, owner and model.
pub struct Restored {
    pub id: SessionId,
    /// The owner, by name (limits come from the caller's token at each call).
    pub tenant: Tenant,
    pub model: AnyModel,
}

/// The state directory and the pool that encodes checkpoints off the async runtime.
#[derive(Clone)]
pub struct Persister {
    config: Arc<PersistConfig>,
    pool: ComputePool,
    metrics: Metrics,
}

impl Persister {
    /// Opens (creating if needed) the directory and clears unfinished writes.
    pub fn open(config: PersistConfig, pool: ComputePool) -> Result<Self, PersistError> {
        let io = |source| PersistError::Io {
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
        })
    }

    /// Counts saves (`backprop_state_saves_total`, `backprop_state_save_seconds`) there.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn config(&self) -> &PersistConfig {
        &self.config
    }

    fn path_of(&self, id: &SessionId) -> PathBuf {
        self.config.dir.join(format!("{id}.{EXTENSION}"))
    }

    /// Decodes every session file. Files that fail are moved into `corrupt/` and logged.
    pub fn restore(&self) -> Result<Vec<Restored>, PersistError> {
        let dir = &self.config.dir;
        let io = |source| PersistError::Io {
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
            match read_session(&path) {
                Ok(r) => restored.push(r),
                Err(why) => self.set_aside(&path, &why),
            }
        }
        Ok(restored)
    }

    fn set_aside(&self, path: &Path, why: &str) {
        let aside = self.config.dir.join(CORRUPT_DIR);
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
                "a session file does not decode; moved aside, the server starts without it"
            ),
            Err(e) => tracing::error!(
                file = %path.display(), reason = why, error = %e,
                "a session file does not decode and could not be moved aside; skipped"
            ),
        }
    }

    /// Writes the session's current state, unless the file already holds this step or
    /// the session is deleted. Writes of one session are serialized, so an older snapshot
    /// never replaces a newer one.
    pub async fn save(&self, session: &Arc<Session>) -> Result<(), PersistError> {
        let _writing = session.persist_lock.lock().await;
        let start = std::time::Instant::now();
        let wrote = self.write(session).await;
        if let Ok(true) | Err(_) = wrote {
            self.metrics.state_save(wrote.is_ok(), start.elapsed());
        }
        wrote.map(|_| ())
    }

    /// The body of [`save`](Self::save), under the session's persist lock: whether a file
    /// was written.
    async fn write(&self, session: &Arc<Session>) -> Result<bool, PersistError> {
        if session.deleted.load(Ordering::Acquire) {
            return Ok(false);
        }
        if session.saved_once.load(Ordering::Acquire)
            && session.persisted_step.load(Ordering::Acquire) == session.step()
        {
            return Ok(false);
        }
        let guard = session.snapshot_lock().await;
        let id = session.id.to_string();
        let tenant = session.tenant.name().to_string();
        let (step, bytes) = self
            .pool
            .run(move || {
                let bytes = checkpoint::encode(&guard, &[(KEY_ID, &id), (KEY_TENANT, &tenant)]);
                (guard.step(), bytes)
            })
            .await
            .map_err(|e| PersistError::Encode(e.to_string()))?;
        let bytes = bytes.map_err(|e| PersistError::Encode(e.to_string()))?;
        let path = self.path_of(&session.id);
        let shown = path.display().to_string();
        tokio::task::spawn_blocking(move || file::write_atomic(&path, &bytes))
            .await
            .map_err(|e| PersistError::Encode(e.to_string()))?
            .map_err(|source| PersistError::Io {
                path: shown,
                source,
            })?;
        session.persisted_step.store(step, Ordering::Release);
        session.saved_once.store(true, Ordering::Release);
        Ok(true)
    }

    /// Marks the session deleted and removes its file (after any write in progress).
    pub async fn remove(&self, session: &Arc<Session>) -> Result<(), PersistError> {
        session.deleted.store(true, Ordering::Release);
        let _writing = session.persist_lock.lock().await;
        let path = self.path_of(&session.id);
        let shown = path.display().to_string();
        tokio::task::spawn_blocking(move || file::remove_durably(&path))
            .await
            .map_err(|e| PersistError::Encode(e.to_string()))?
            .map_err(|source| PersistError::Io {
                path: shown,
                source,
            })
    }

    /// Whether a session that just reached `step` is due a background save.
    pub fn due(&self, session: &Session, step: u64) -> bool {
        let every = self.config.every_steps;
        every > 0 && step >= session.persisted_step.load(Ordering::Acquire) + every
    }
}

fn read_session(path: &Path) -> Result<Restored, String> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = SessionId::parse(&stem).ok_or_else(|| format!("{stem:?} is not a session id"))?;
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let decoded = checkpoint::decode(&bytes).map_err(|e| e.to_string())?;
    match decoded.extra.get(KEY_ID) {
        Some(inside) if *inside == stem => Ok(Restored {
            id,
            tenant: Tenant::new(
                decoded.extra.get(KEY_TENANT).map_or("", String::as_str),
                None,
            ),
            model: decoded.model,
        }),
        other => Err(format!(
            "the file is named {stem} but holds session {other:?}"
        )),
    }
}
