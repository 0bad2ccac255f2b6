//! Session ids: 128 bits from the operating system's generator, as 32 hex digits, so a
//! client cannot guess another client's model. A server started with `--replica-id NAME`
//! prefixes them with its name, `NAME.<32 hex digits>`, so that a proxy in front of
//! several replicas can send every call for a session to the replica that holds it by
//! reading the id alone: the route is fixed when the id is made and never moves when
//! replicas come and go (docs/DEPLOY.md). Dataset ids have the same form.
use std::fmt;
use std::sync::Mutex;

/// The replica a server's sessions live on: `--replica-id`, or none. Cheap to copy (the
/// name is interned once per distinct name for the life of the process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Replica(Option<&'static str>);

/// The longest replica name: a DNS label, as a Kubernetes pod name is.
pub const MAX_REPLICA_LEN: usize = 63;

impl Replica {
    /// The replica `name`, if it is a DNS label (RFC 1123: lowercase letters, digits and
    /// `-`, starting and ending with a letter or digit, at most 63 characters), which is
    /// what a StatefulSet's pod names are and what a proxy's pattern expects.
    pub fn named(name: &str) -> Result<Self, String> {
        if !is_replica_name(name) {
            return Err(format!(
                "{name:?} is not a replica name: lowercase letters, digits and '-', \
                 starting and ending with a letter or digit, at most {MAX_REPLICA_LEN} \
                 characters (a Kubernetes pod name such as backprop-2)"
            ));
        }
        Ok(Replica(Some(intern(name))))
    }

    /// The name, `None` for a server without `--replica-id`.
    pub fn name(self) -> Option<&'static str> {
        self.0
    }

    /// Whether an id's replica part (`None`: the id has none) is this replica.
    fn is(self, part: Option<&str>) -> bool {
        self.0 == part
    }
}

impl fmt::Display for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.unwrap_or("(no replica id)"))
    }
}

/// Whether `s` may name a replica (see [`Replica::named`]).
pub fn is_replica_name(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= MAX_REPLICA_LEN
        && b.iter().all(|c| inner(c) || *c == b'-')
        && inner(&b[0])
        && inner(&b[b.len() - 1])
}

/// Replica names seen by this process, each leaked once: a server names one, a test
/// process a handful. Client-sent names are never interned (they are compared, not kept).
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = names.iter().find(|n| **n == name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.push(leaked);
    leaked
}

/// Ordered by value, which is also the order of the hex form (fixed width, lowercase;
/// one store holds one replica's ids): ListModels pages in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId {
    replica: Replica,
    bits: u128,
}

/// An id as a client (or a file name) spells it, before it is known to be this
/// replica's: the replica part is borrowed from the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdParts<'a> {
    pub replica: Option<&'a str>,
    bits: u128,
}

impl SessionId {
    /// A fresh random id on `replica`.
    pub fn random(replica: Replica) -> std::io::Result<Self> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(SessionId {
            replica,
            bits: u128::from_le_bytes(bytes),
        })
    }

    /// Parses `HEX` or `REPLICA.HEX` (HEX: exactly 32 hex digits); anything else is
    /// `None`. Whose it is, [`IdParts::on`] says.
    pub fn parse(s: &str) -> Option<IdParts<'_>> {
        let (replica, hex) = match s.split_once('.') {
            Some((r, hex)) if is_replica_name(r) => (Some(r), hex),
            Some(_) => return None,
            None => (None, s),
        };
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let bits = u128::from_str_radix(hex, 16).ok()?;
        Some(IdParts { replica, bits })
    }

    /// The replica the id was made on.
    pub fn replica(&self) -> Replica {
        self.replica
    }
}

impl IdParts<'_> {
    /// The id as one of `here`'s, or `Err` with the replica part when it names another
    /// replica (or has a replica part where `here` has none, or none where it has one).
    pub fn on(self, here: Replica) -> Result<SessionId, Option<String>> {
        if here.is(self.replica) {
            Ok(SessionId {
                replica: here,
                bits: self.bits,
            })
        } else {
            Err(self.replica.map(str::to_owned))
        }
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.replica.0 {
            Some(r) => write!(f, "{r}.{:032x}", self.bits),
            None => write!(f, "{:032x}", self.bits),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_with_and_without_a_replica() {
        for replica in [Replica::default(), Replica::named("backprop-2").unwrap()] {
            let id = SessionId::random(replica).unwrap();
            let text = id.to_string();
            assert_eq!(SessionId::parse(&text).unwrap().on(replica), Ok(id));
            assert_eq!(text.len(), 32 + replica.name().map_or(0, |n| n.len() + 1));
        }
        let id = SessionId::random(Replica::named("a").unwrap()).unwrap();
        let text = id.to_string();
        let parts = SessionId::parse(&text).unwrap();
        assert_eq!(parts.replica, Some("a"));
        assert_eq!(parts.on(Replica::default()), Err(Some("a".into())));
        assert_eq!(
            parts.on(Replica::named("b").unwrap()),
            Err(Some("a".into()))
        );
        let zeros = "0".repeat(32);
        let plain = SessionId::parse(&zeros).unwrap();
        assert_eq!(plain.on(Replica::named("a").unwrap()), Err(None));
    }

    #[test]
    fn malformed_ids_and_names_are_refused() {
        let hex = "0123456789abcdef0123456789ABCDEF";
        assert!(SessionId::parse(hex).is_some());
        for bad in [
            "",
            &hex[1..],
            &format!("{hex}0"),
            &format!(".{hex}"),
            &format!("A.{hex}"),
            &format!("-a.{hex}"),
            &format!("a-.{hex}"),
            &format!("a.b.{hex}"),
            &format!("a_b.{hex}"),
            &format!("{}.{hex}", "a".repeat(64)),
            &format!("a.{}g", &hex[1..]),
        ] {
            assert!(SessionId::parse(bad).is_none(), "{bad:?}");
        }
        assert!(SessionId::parse(&format!("{}.{hex}", "a".repeat(63))).is_some());
        for bad in [
            "",
            "Backprop-0",
            "backprop_0",
            "-x",
            "x-",
            "a.b",
            &"a".repeat(64),
        ] {
            assert!(Replica::named(bad).is_err(), "{bad:?}");
        }
        for good in ["0", "backprop-0", "a-b-c", &"z".repeat(63)] {
            assert_eq!(Replica::named(good).unwrap().name(), Some(good));
        }
        // Interned once: the same name is the same replica.
        assert_eq!(Replica::named("x1").unwrap(), Replica::named("x1").unwrap());
    }
}
