//! Session ids: 128 bits from the operating system's generator, as 32 hex digits, so a
//! client cannot guess another client's model.
use std::fmt;

/// Ordered by value, which is also the order of the hex form (fixed width, lowercase):
/// ListModels pages in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(u128);

impl SessionId {
    /// A fresh random id.
    pub fn random() -> std::io::Result<Self> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(SessionId(u128::from_le_bytes(bytes)))
    }

    /// Parses the 32-hex-digit form; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(SessionId)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}
