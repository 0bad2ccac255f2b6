//! Binding the listening sockets with a listen backlog sized for the connection cap.
//!
//! `tokio::net::TcpListener::bind` asks the kernel for a backlog of 128 connections. At
//! the connection cap (`--max-connections`) the accept loop stops taking connections and
//! new clients wait in that backlog; past 128 of them the kernel drops their SYNs and
//! they retry after 1 s, 3 s, 7 s... (647 `TcpExtListenOverflows` in one run of the
//! `idle-sockets-to-cap` attack, bench/attacks/README.md). A larger backlog lets a burst
//! of clients wait their turn instead. Linux caps it at `net.core.somaxconn` (4096 by
//! default since 5.4), so asking for more than that is harmless.
use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel queues for the accept loop (before `net.core.somaxconn`).
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with [`LISTEN_BACKLOG`], address reuse on as tokio's own bind
/// sets it (a restarted server rebinds its port at once).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// More clients than tokio's default backlog of 128 complete their connect while the
    /// server accepts none of them: they wait in the kernel's queue, not in SYN retries.
    #[tokio::test]
    async fn clients_beyond_128_wait_in_the_backlog() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects: Vec<_> = (0..400)
            .map(|_| {
                tokio::spawn(async move {
                    // A dropped SYN is retried after 1 s: within 0.9 s only a queued
                    // connect completes.
                    tokio::time::timeout(
                        Duration::from_millis(900),
                        tokio::net::TcpStream::connect(addr),
                    )
                    .await
                })
            })
            .collect();
        let mut streams = Vec::new();
        for c in connects {
            if let Ok(Ok(s)) = c.await.unwrap() {
                streams.push(s);
            }
        }
        // The kernel queues backlog + 1; its cap on the backlog is the machine's setting.
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        let queued = 400.min(somaxconn.min(LISTEN_BACKLOG as usize) + 1);
        assert_eq!(
            streams.len(),
            queued,
            "connects completed without an accept"
        );
        drop(listener);
    }
}
