//! Operations on the real binary: `backprop serve` started as a child process on
//! 127.0.0.1:0 with real flags, signals, file systems (tmpfs, read-only) and sockets:
//! transport limits, memory limits under `ulimit`, durability, restarts after SIGTERM and
//! `kill -9`, the export stream's memory, the server's command line.
mod cli;
mod durability;
mod export_stream;
mod limits;
mod persist_restart;
mod proxy;
mod replicas;
mod transport;

/// Taken by the tests that load the machine (three replicas and their proxies under
/// several clients) and by the one whose timing bound such load would break (the kill -9
/// loop's age window), so that they take turns instead of running side by side.
pub(crate) static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
