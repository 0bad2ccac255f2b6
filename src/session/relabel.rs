//! UpdateModel's change of a model's name and labels: checked as a whole, applied, and
//! with a state directory written to disk before it is acknowledged. A change that cannot
//! be saved is undone, so a refused call leaves the model as it was.
use std::sync::Arc;

use super::about::{About, AboutChange};
use super::store::{Session, SessionStore, StoreError};

impl SessionStore {
    /// Applies `change` to the session's metadata and returns the metadata now. Changes
    /// of one session are applied one at a time, each until it is saved; the model's
    /// lock is not taken, so a running fit or a long step goes on meanwhile.
    pub async fn change_about(
        &self,
        session: &Arc<Session>,
        change: AboutChange,
    ) -> Result<About, StoreError> {
        let _one_at_a_time = session.about_change.lock().await;
        if let Some(reason) = session.unsaved() {
            return Err(StoreError::Unsaved {
                id: session.id.to_string(),
                reason,
            });
        }
        let before = session.about();
        let next = before.changed(change)?;
        // Only the name and labels: a fit may set the dataset meanwhile.
        session.edit_about(|a| {
            a.name = next.name;
            a.labels = next.labels;
        });
        if let Some(p) = &self.shared.persister
            && let Err(e) = p.save(session.as_ref()).await
        {
            session.edit_about(|a| {
                a.name = before.name;
                a.labels = before.labels;
            });
            return Err(StoreError::Persist(e.to_string()));
        }
        Ok(session.about())
    }
}
