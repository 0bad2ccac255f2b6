//! What calls in flight may hold, apart from the sessions themselves: bytes reserved
//! against the server's memory budget (a call's estimated peak, from before it queues
//! until it returns) and places in one session's queue of callers waiting for its lock.
//! Both are RAII guards, so every way out of a call (an error, a cancel, a panic caught
//! on the pool) gives them back.
//!
//! Also here: the budget a server gets when none is configured, from the machine or the
//! container it runs in ([`default_memory_budget`]).
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Bytes reserved by calls in flight. The sessions' own bytes are counted by the store;
/// a reservation fits when both together stay within the budget.
#[derive(Debug, Default)]
pub struct Reservations {
    reserved: Arc<AtomicU64>,
}

impl Reservations {
    /// Bytes all live reservations hold now.
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Acquire)
    }

    /// Reserves `need` bytes if `held` (the sessions' bytes) plus what is reserved plus
    /// `need` stays within `budget`; `None` otherwise (nothing is reserved then).
    pub fn try_reserve(&self, need: u64, held: u64, budget: u64) -> Option<Reservation> {
        try_add(&self.reserved, need, held, budget).then(|| Reservation {
            reserved: Some(self.reserved.clone()),
            bytes: need,
        })
    }
}

/// Adds `need` to `reserved` if `held + reserved + need` stays within `budget`.
fn try_add(reserved: &AtomicU64, need: u64, held: u64, budget: u64) -> bool {
    reserved
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
            let total = held.checked_add(current)?.checked_add(need)?;
            (total <= budget).then_some(current + need)
        })
        .is_ok()
}

/// Bytes held against the memory budget until dropped.
#[derive(Debug)]
#[must_use = "the bytes are given back as soon as the reservation drops"]
pub struct Reservation {
    /// `None` for a server without a budget: nothing to give back.
    reserved: Option<Arc<AtomicU64>>,
    bytes: u64,
}

impl Reservation {
    /// A reservation that holds nothing (the server has no memory budget).
    pub fn unlimited(bytes: u64) -> Self {
        Reservation {
            reserved: None,
            bytes,
        }
    }

    /// The bytes this reservation holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Gives back all but `bytes` of what this reservation holds (nothing if it holds
    /// less): for a call whose answer, smaller than its peak, waits to be sent.
    pub fn keep(&mut self, bytes: u64) {
        let give = self.bytes.saturating_sub(bytes);
        if let Some(r) = &self.reserved {
            r.fetch_sub(give, Ordering::AcqRel);
        }
        self.bytes -= give;
    }

    /// Holds `more` bytes too if they fit beside `held` (the sessions' bytes), all other
    /// reservations and this one within `budget`; unchanged and `false` otherwise. For
    /// what grows while a call runs (an upload as its chunks arrive).
    pub fn try_grow(&mut self, more: u64, held: u64, budget: u64) -> bool {
        let fits = match &self.reserved {
            Some(r) => try_add(r, more, held, budget),
            None => true,
        };
        if fits {
            self.bytes = self.bytes.saturating_add(more);
        }
        fits
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(r) = &self.reserved {
            r.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

/// What an upload in flight holds: its bytes against the memory budget and, the same
/// bytes again, against the share of the budget that uploads together may take (see
/// `Limits::max_upload_memory`). The share is what keeps stalled or slow uploads from
/// starving every other call: however many there are, the rest of the budget stays
/// for sessions and for calls that compute.
#[derive(Debug)]
#[must_use = "the bytes are given back as soon as the upload's hold drops"]
pub struct UploadHold {
    budget: Reservation,
    share: Reservation,
}

/// Which limit an upload's growth would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadRefusal {
    /// The uploads' share of the budget.
    Share,
    /// The memory budget itself.
    Budget,
}

impl UploadHold {
    /// An upload holding nothing yet.
    pub fn new(budget: Reservation, share: Reservation) -> Self {
        UploadHold { budget, share }
    }

    /// The bytes this upload holds.
    pub fn bytes(&self) -> u64 {
        self.budget.bytes()
    }

    /// Holds `more` bytes if they fit within the uploads' `share_cap` and, beside `held`
    /// (the sessions' bytes) and every other reservation, within `budget`; holds nothing
    /// more and says which limit refused otherwise.
    pub fn try_grow(
        &mut self,
        more: u64,
        held: u64,
        budget: u64,
        share_cap: u64,
    ) -> Result<(), UploadRefusal> {
        self.try_grow_beside(more, held, budget, (0, share_cap))
    }

    /// As [`try_grow`](Self::try_grow), with the share's cap holding `share_held` bytes
    /// already besides the uploads (the datasets held, for a dataset upload).
    pub fn try_grow_beside(
        &mut self,
        more: u64,
        held: u64,
        budget: u64,
        (share_held, share_cap): (u64, u64),
    ) -> Result<(), UploadRefusal> {
        if !self.share.try_grow(more, share_held, share_cap) {
            return Err(UploadRefusal::Share);
        }
        if !self.budget.try_grow(more, held, budget) {
            let before = self.share.bytes() - more;
            self.share.keep(before);
            return Err(UploadRefusal::Budget);
        }
        Ok(())
    }
}

/// A reservation carried by a response until the transport has sent it (or dropped it):
/// an answer waiting for a slow or silent reader still counts against the budget, so
/// many of them cannot add up past it. Cloneable only to travel in a response's
/// extensions; the bytes come back when the last clone drops.
#[derive(Debug, Clone)]
pub struct UntilSent(Arc<Reservation>);

impl UntilSent {
    pub fn new(r: Reservation) -> Self {
        UntilSent(Arc::new(r))
    }

    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        self.0.bytes()
    }
}

/// Calls waiting for one session's lock at most, by default. Steps on one session run
/// one at a time, so a deeper queue only holds more requests' memory for longer; a
/// client pipelining more than this on one model should wait for answers.
pub const DEFAULT_MAX_SESSION_WAITERS: usize = 64;

/// Callers waiting for one session's lock. A place is taken before the wait starts and
/// given back once the lock is held (or the call ends), so at most `max` calls wait on
/// one session however many arrive: the rest are refused at once instead of piling up
/// (each waiting call holds its request's memory).
#[derive(Debug, Default)]
pub struct Waiters {
    waiting: Arc<AtomicUsize>,
}

impl Waiters {
    /// Calls waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// A place in the queue if fewer than `max` calls wait; `None` when it is full.
    pub fn try_enter(&self, max: usize) -> Option<WaitPlace> {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| WaitPlace(self.waiting.clone()))
    }
}

/// A place in a session's queue, given back when dropped.
#[derive(Debug)]
#[must_use = "the place is given back as soon as it drops"]
pub struct WaitPlace(Arc<AtomicUsize>);

impl Drop for WaitPlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The fraction of the memory available to the process that the budget takes when none
/// is configured. The budget counts what sessions hold and every call's *estimated* peak;
/// the other half covers what the estimate does not see: the allocator's retained and
/// fragmented heap (`malloc::keep_step_buffers` keeps freed step buffers on purpose),
/// HTTP/2 buffers and windows (16 MiB per stream), responses being encoded after their
/// call returned, thread stacks, and, in a container, the page cache charged to it.
pub const DEFAULT_MEMORY_FRACTION: f64 = 0.5;

/// Where a default budget came from, for the startup log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemorySource {
    /// The cgroup v2 `memory.max` of the process's container.
    CgroupV2,
    /// The cgroup v1 `memory.limit_in_bytes`.
    CgroupV1,
    /// The address-space limit (`ulimit -v`, RLIMIT_AS).
    AddressSpace,
    /// The machine's `MemTotal` (`/proc/meminfo`).
    MemTotal,
}

/// The memory this process can use: the smallest of its cgroup limit (v2, else v1), its
/// address-space limit and the machine's total memory, with where it came from. `None`
/// where none of them can be read (not Linux).
pub fn available_memory() -> Option<(u64, MemorySource)> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let mut candidates = Vec::new();
    // "max" (no limit) does not parse and is skipped; v1 reports "no limit" as a huge
    // number, which MemTotal then undercuts.
    if let Some(n) = read("/sys/fs/cgroup/memory.max").and_then(|t| t.trim().parse().ok()) {
        candidates.push((n, MemorySource::CgroupV2));
    } else if let Some(n) =
        read("/sys/fs/cgroup/memory/memory.limit_in_bytes").and_then(|t| t.trim().parse().ok())
    {
        candidates.push((n, MemorySource::CgroupV1));
    }
    if let Some(n) = address_space_limit() {
        candidates.push((n, MemorySource::AddressSpace));
    }
    if let Some(n) = read("/proc/meminfo").and_then(|t| mem_total(&t)) {
        candidates.push((n, MemorySource::MemTotal));
    }
    candidates.into_iter().min_by_key(|&(n, _)| n)
}

/// The budget for a server given none: [`DEFAULT_MEMORY_FRACTION`] of
/// [`available_memory`].
pub fn default_memory_budget() -> Option<(u64, MemorySource)> {
    available_memory().map(|(n, src)| ((n as f64 * DEFAULT_MEMORY_FRACTION) as u64, src))
}

/// `MemTotal:  16315836 kB` → bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn address_space_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit struct we own.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut r) } == 0;
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
        (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_beside_the_sessions_and_are_given_back() {
        let r = Reservations::default();
        let a = r
            .try_reserve(600, 300, 1000)
            .expect("600 + 300 fits in 1000");
        assert_eq!(r.reserved(), 600);
        assert!(r.try_reserve(101, 300, 1000).is_none(), "1001 > 1000");
        let b = r.try_reserve(100, 300, 1000).expect("exactly 1000");
        assert_eq!((a.bytes(), b.bytes(), r.reserved()), (600, 100, 700));
        drop(a);
        assert_eq!(r.reserved(), 100);
        drop(b);
        assert_eq!(r.reserved(), 0);
        assert!(r.try_reserve(u64::MAX, 1, u64::MAX).is_none(), "overflow");
    }

    #[test]
    fn a_reservation_grows_only_within_the_budget_and_gives_all_of_it_back() {
        let r = Reservations::default();
        let other = r.try_reserve(200, 300, 1000).expect("fits");
        let mut upload = r.try_reserve(0, 300, 1000).expect("nothing fits");
        assert!(upload.try_grow(400, 300, 1000));
        assert!(upload.try_grow(100, 300, 1000), "exactly 1000");
        assert!(!upload.try_grow(1, 300, 1000), "1001 > 1000");
        assert_eq!((upload.bytes(), r.reserved()), (500, 700));
        drop(upload);
        assert_eq!(r.reserved(), 200);
        drop(other);
        assert_eq!(r.reserved(), 0);
        let mut answer = r.try_reserve(300, 0, 1000).expect("fits");
        answer.keep(120);
        assert_eq!((answer.bytes(), r.reserved()), (120, 120));
        answer.keep(500);
        assert_eq!(answer.bytes(), 120, "keep never grows");
        let sent = UntilSent::new(answer);
        let copy = sent.clone();
        drop(sent);
        assert_eq!(r.reserved(), 120, "a clone still holds it");
        drop(copy);
        assert_eq!(r.reserved(), 0);
        let mut free = Reservation::unlimited(5);
        assert!(free.try_grow(u64::MAX - 5, 0, 0), "no budget, no refusal");
    }

    #[test]
    fn an_upload_grows_within_its_share_and_the_budget_and_gives_both_back() {
        let (budget, share) = (Reservations::default(), Reservations::default());
        let hold = |b: &Reservations, s: &Reservations| {
            UploadHold::new(
                b.try_reserve(0, 0, u64::MAX).unwrap(),
                s.try_reserve(0, 0, u64::MAX).unwrap(),
            )
        };
        let mut a = hold(&budget, &share);
        assert_eq!(a.try_grow(300, 100, 1000, 400), Ok(()));
        let mut b = hold(&budget, &share);
        assert_eq!(b.try_grow(101, 100, 1000, 400), Err(UploadRefusal::Share));
        assert_eq!(b.try_grow(100, 100, 1000, 400), Ok(()), "exactly the share");
        assert_eq!((budget.reserved(), share.reserved()), (400, 400));
        // The budget refuses while the share has room: the share is given back too.
        let mut c = hold(&budget, &share);
        assert_eq!(c.try_grow(50, 600, 1000, 1000), Err(UploadRefusal::Budget));
        assert_eq!(
            (c.bytes(), budget.reserved(), share.reserved()),
            (0, 400, 400)
        );
        drop((a, b, c));
        assert_eq!((budget.reserved(), share.reserved()), (0, 0));
    }

    #[test]
    fn a_session_queue_holds_at_most_max_waiters() {
        let w = Waiters::default();
        let places: Vec<_> = (0..3).map(|_| w.try_enter(3).expect("room")).collect();
        assert!(w.try_enter(3).is_none());
        assert_eq!(w.waiting(), 3);
        drop(places);
        assert_eq!(w.waiting(), 0);
        assert!(w.try_enter(3).is_some());
    }

    #[test]
    fn mem_total_is_read_in_bytes() {
        let text = "MemFree:  1 kB\nMemTotal:       16315836 kB\n";
        assert_eq!(mem_total(text), Some(16_315_836 * 1024));
        assert_eq!(mem_total("nothing"), None);
    }
}
