//! One page of sessions (or datasets) in id order, continuing after the last id of the page before:
//! a position that stays meaningful while sessions come and go, so paging through never
//! repeats or skips a session that lives throughout (an offset would shift with every
//! delete). Listing is not held under the map's lock between pages; each page is
//! chosen from a snapshot of the caller's sessions.
use std::sync::Arc;

use super::id::SessionId;
use super::store::Session;

/// What is listed by id: sessions and datasets.
pub trait Listed {
    fn listed_id(&self) -> SessionId;
}

impl Listed for Session {
    fn listed_id(&self) -> SessionId {
        self.id
    }
}

/// A page of sessions or datasets, in id order.
pub struct Page<T> {
    pub items: Vec<Arc<T>>,
    /// Where the next page starts after (this page's last id), when any session follows.
    pub next_after: Option<SessionId>,
}

/// Of `sessions`, those with an id after `after` (all without one), the first `size` (at
/// least 1) of them in id order (`None`: all of them). Costs O(n + size·log size): the page is picked
/// out before it is sorted, so paging through a large store does not sort it all for
/// every page.
pub fn page<T: Listed>(
    mut sessions: Vec<Arc<T>>,
    after: Option<SessionId>,
    size: Option<usize>,
) -> Page<T> {
    if let Some(after) = after {
        sessions.retain(|s| s.listed_id() > after);
    }
    let more = match size.map(|n| n.max(1)) {
        Some(n) if sessions.len() > n => {
            sessions.select_nth_unstable_by_key(n - 1, |s| s.listed_id());
            sessions.truncate(n);
            true
        }
        _ => false,
    };
    sessions.sort_unstable_by_key(|s| s.listed_id());
    let next_after = if more {
        sessions.last().map(|s| s.listed_id())
    } else {
        None
    };
    Page {
        items: sessions,
        next_after,
    }
}
