//! Tenants: who owns a session. With `--auth-tokens` every call carries the tenant its
//! token names; without, every call is the anonymous tenant and sees every session.
use std::fmt;
use std::sync::Arc;

/// A tenant's name and limits. Two tenants are the same iff their names are.
#[derive(Clone, Default)]
pub struct Tenant {
    name: Arc<str>,
    max_sessions: Option<usize>,
    max_dataset_bytes: Option<u64>,
}

impl Tenant {
    pub fn new(name: &str, max_sessions: Option<usize>) -> Self {
        Tenant {
            name: name.into(),
            max_sessions,
            max_dataset_bytes: None,
        }
    }

    /// This tenant with a cap on the bytes its datasets hold together.
    pub fn with_max_dataset_bytes(mut self, max: Option<u64>) -> Self {
        self.max_dataset_bytes = max;
        self
    }

    /// The one tenant when authentication is off ("").
    pub fn anonymous() -> Self {
        Tenant::default()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Live sessions this tenant may hold at once, beyond the server-wide limit.
    pub fn max_sessions(&self) -> Option<usize> {
        self.max_sessions
    }

    /// Bytes this tenant's datasets may hold together, within the server-wide
    /// `--max-dataset-memory`, so one tenant cannot take every other's room.
    pub fn max_dataset_bytes(&self) -> Option<u64> {
        self.max_dataset_bytes
    }
}

impl PartialEq for Tenant {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Tenant {}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tenant({:?})", &*self.name)
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.name {
            "" => f.write_str("(anonymous)"),
            name => f.write_str(name),
        }
    }
}
