//! The Trainer's health entry follows the state directory: NOT_SERVING while any session
//! is unsaved (its last save failed, so it refuses changes), SERVING again once every
//! save succeeds. The server's own entry ("") stays SERVING: reads and other sessions
//! still work, and a probe of the whole process should not restart it for a full disk.
use tonic_health::server::HealthReporter;

use super::TrainerService;
use crate::pb::trainer_server::TrainerServer;
use crate::session::SessionStore;

/// Stops following when dropped (at shutdown, before the entry goes NOT_SERVING for good).
pub struct Following(tokio::task::JoinHandle<()>);

impl Drop for Following {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps the Trainer's entry in step with the store's count of unsaved sessions; `None`
/// without a state directory (nothing to follow).
pub fn follow_saves(store: &SessionStore, health: HealthReporter) -> Option<Following> {
    let mut unsaved = store.watch_unsaved()?;
    Some(Following(tokio::spawn(async move {
        loop {
            let n = *unsaved.borrow_and_update();
            if n > 0 {
                health
                    .set_not_serving::<TrainerServer<TrainerService>>()
                    .await;
            } else {
                health.set_serving::<TrainerServer<TrainerService>>().await;
            }
            if unsaved.changed().await.is_err() {
                return;
            }
        }
    })))
}
