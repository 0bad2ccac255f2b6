//! The `backprop` binary: `backprop serve` runs the server; `train`, `models`, `show`,
//! `delete`, `export`, `import`, `health`, `bench` and `graph` are clients of a running one
//! (`backprop::cli`). Thin: parse flags, set up logging, bind, call
//! `backprop::server::run` with a Ctrl-C/SIGTERM shutdown future, or hand a client
//! subcommand to `backprop::cli::run`.
use std::net::SocketAddr;
use std::time::Duration;

use backprop::server::{self, Config, Listeners};
use backprop::service::RequestLimits;
use backprop::service::auth::Tokens;
use backprop::session::{Limits, PersistConfig, Replica};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "backprop",
    version,
    about = "Neural-network training as a gRPC service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC server.
    Serve(ServeArgs),
    #[command(flatten)]
    Client(backprop::cli::Command),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is logged).
    #[arg(long, env = "BACKPROP_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Log format: human-readable text or one JSON object per line (for containers).
    #[arg(long, env = "BACKPROP_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Live sessions at most.
    #[arg(long, env = "BACKPROP_MAX_SESSIONS", default_value_t = 100_000)]
    max_sessions: usize,
    /// Parameters (scalars) per model at most.
    #[arg(long, env = "BACKPROP_MAX_PARAMETERS", default_value_t = 50_000_000)]
    max_parameters: u64,
    /// Elements in one request tensor (e.g. a batch X) at most.
    #[arg(long, env = "BACKPROP_MAX_BATCH_ELEMENTS", default_value_t = 16 * 1024 * 1024)]
    max_batch_elements: usize,
    /// Largest gRPC message, in MiB, both ways.
    #[arg(long, env = "BACKPROP_MAX_MESSAGE_MIB", default_value_t = 64)]
    max_message_mib: usize,
    /// Drop a session unused for this many seconds; 0 = never.
    #[arg(long, env = "BACKPROP_IDLE_TTL_SECS", default_value_t = 0)]
    idle_ttl_secs: u64,
    /// Threads doing model math; 0 = one per core.
    #[arg(long, env = "BACKPROP_COMPUTE_THREADS", default_value_t = 0)]
    compute_threads: usize,
    /// Threads one matrix product may use. 1 suits many sessions trained side by side
    /// (each compute thread takes one); more suits one big session on an idle machine.
    #[arg(long, env = "BACKPROP_MATMUL_THREADS", default_value_t = 1)]
    matmul_threads: usize,
    /// Calls estimated at or below this many multiply-adds (about rows × parameters for
    /// a forward pass, × 3 with backward) compute on the network thread that received them:
    /// for them the hand-off to a compute thread costs more than the math. 0 = never.
    #[arg(long, env = "BACKPROP_INLINE_MAX_WORK", default_value_t = backprop::service::rpc::DEFAULT_INLINE_MAX_WORK)]
    inline_max_work: u64,
    /// Calls that may wait for a compute thread before new ones get RESOURCE_EXHAUSTED.
    #[arg(long, env = "BACKPROP_QUEUE_DEPTH", default_value_t = 1024)]
    queue_depth: usize,
    /// Seconds in-flight calls may take to finish after SIGINT/SIGTERM.
    #[arg(long, env = "BACKPROP_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    shutdown_grace_secs: u64,
    /// This server's name among replicas behind one proxy (in Kubernetes, the
    /// StatefulSet pod's name, e.g. backprop-2): model and dataset ids become
    /// `NAME.<32 hex digits>`, so a proxy routes each call on its `x-backprop-model`
    /// header to the replica that holds the session (docs/DEPLOY.md). A DNS label. Unset
    /// or empty: ids are the 32 hex digits alone. A state directory keeps the name it
    /// was written with: starting on it under another name is refused.
    #[arg(long, env = "BACKPROP_REPLICA_ID", default_value = "", value_parser = parse_replica)]
    replica_id: Replica,
    /// Keep every session in this directory (one safetensors checkpoint per session,
    /// written atomically) and restore them all on start. Unset or empty: sessions live
    /// in memory only and are gone after a restart (an empty value lets a container
    /// whose image sets BACKPROP_STATE_DIR opt out).
    #[arg(long, env = "BACKPROP_STATE_DIR", num_args = 0..=1, default_missing_value = "")]
    state_dir: Option<std::path::PathBuf>,
    /// With --state-dir: save a session in the background once it is this many steps past
    /// its file (0 = only on the interval).
    #[arg(long, env = "BACKPROP_SAVE_EVERY_STEPS", default_value_t = 1000)]
    save_every_steps: u64,
    /// With --state-dir: save every session whose step moved at least this often; after a
    /// crash (kill -9) a session comes back no older than about this.
    #[arg(long, env = "BACKPROP_SAVE_INTERVAL_SECS", default_value_t = 5.0)]
    save_interval_secs: f64,
    /// Memory that sessions (parameters and optimizer state) and calls in flight (each
    /// call's estimated peak, from arrival to answer) may hold together, e.g. `512MiB`,
    /// `8GiB` or a number of bytes; beyond it calls get RESOURCE_EXHAUSTED. `auto` = half
    /// of the container's cgroup limit, the address-space limit or the machine's memory,
    /// whichever is smallest; 0 = no budget.
    #[arg(long, env = "BACKPROP_MAX_MEMORY", default_value = "auto", value_parser = parse_memory)]
    max_memory: MemoryFlag,
    /// Estimated peak memory one call may take, at most (e.g. `1GiB`); a call beyond it
    /// can never succeed and gets INVALID_ARGUMENT. 0 = the whole memory budget.
    #[arg(long, env = "BACKPROP_MAX_CALL_MEMORY", default_value = "0", value_parser = parse_bytes)]
    max_call_memory: u64,
    /// Calls that may wait for one model's lock at once; more get RESOURCE_EXHAUSTED.
    #[arg(long, env = "BACKPROP_MAX_SESSION_WAITERS", default_value_t = backprop::session::budget::DEFAULT_MAX_SESSION_WAITERS)]
    max_session_waiters: usize,
    /// Memory all uploads in flight (ImportModel) may hold together, e.g. `1GiB`; an
    /// upload beyond it gets RESOURCE_EXHAUSTED, and no checkpoint larger is accepted.
    /// 0 = half the memory budget, so stalled uploads never take what other calls need.
    #[arg(long, env = "BACKPROP_MAX_UPLOAD_MEMORY", default_value = "0", value_parser = parse_bytes)]
    max_upload_memory: u64,
    /// Memory all datasets (UploadDataset) may hold together, e.g. `2GiB`; an upload
    /// beyond it gets RESOURCE_EXHAUSTED. Datasets count in --max-memory as well. 0 = half
    /// the memory budget (no cap without one).
    #[arg(long, env = "BACKPROP_MAX_DATASET_MEMORY", default_value = "0", value_parser = parse_bytes)]
    max_dataset_memory: u64,
    /// Seconds an upload may go without a chunk before it is cut off (DEADLINE_EXCEEDED)
    /// and what it holds is freed.
    #[arg(long, env = "BACKPROP_UPLOAD_STALL_SECS", default_value_t = backprop::service::limits::DEFAULT_UPLOAD_STALL.as_secs())]
    upload_stall_secs: u64,
    /// Once listening, write the bound address (e.g. `127.0.0.1:40123`) to this file, so a
    /// script that started the server on port 0 learns its port.
    #[arg(long, env = "BACKPROP_ADDRESS_FILE")]
    address_file: Option<std::path::PathBuf>,
    /// Serve Prometheus metrics at http://ADDRESS/metrics (plaintext HTTP: keep it on a
    /// private address, e.g. 127.0.0.1:9090). Off by default.
    #[arg(long, env = "BACKPROP_METRICS_LISTEN", value_name = "ADDRESS")]
    metrics_listen: Option<SocketAddr>,
    /// Require `authorization: Bearer <token>` on every call but health's. FILE has one
    /// `TOKEN TENANT [max_sessions=N]` a line (`#` comments); a tenant sees only its own
    /// sessions.
    #[arg(long, env = "BACKPROP_AUTH_TOKENS", value_name = "FILE")]
    auth_tokens: Option<std::path::PathBuf>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(
        long,
        env = "BACKPROP_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(
        long,
        env = "BACKPROP_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<std::path::PathBuf>,
    /// Mutual TLS: refuse clients without a certificate signed by this CA (PEM).
    #[arg(
        long,
        env = "BACKPROP_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<std::path::PathBuf>,
    /// Open gRPC connections at most; more clients wait in the listen backlog until one
    /// closes. 0 = three quarters of the open-files limit (`ulimit -n`), at most 10000.
    #[arg(long, env = "BACKPROP_MAX_CONNECTIONS", default_value_t = 0)]
    max_connections: usize,
    /// Calls open at once on one connection; a client's calls beyond it wait on the
    /// client's side (streams over it are refused with REFUSED_STREAM).
    #[arg(long, env = "BACKPROP_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    max_concurrent_streams: u32,
    /// Seconds a new connection has to send the HTTP/2 preface (with TLS: to finish the
    /// TLS handshake) before it is closed.
    #[arg(long, env = "BACKPROP_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10)]
    handshake_timeout_secs: u64,
    /// Close a connection with no call open for this many seconds; 0 = never.
    #[arg(long, env = "BACKPROP_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    idle_timeout_secs: u64,
    /// Close a connection that takes none of the response bytes it is owed (less than 16
    /// KiB) for this many seconds: a client that stops reading.
    #[arg(long, env = "BACKPROP_SEND_TIMEOUT_SECS", default_value_t = 30)]
    send_timeout_secs: u64,
    /// Seconds between HTTP/2 keepalive pings on a connection that sends nothing; 0 = no
    /// pings.
    #[arg(long, env = "BACKPROP_KEEPALIVE_INTERVAL_SECS", default_value_t = 60)]
    keepalive_interval_secs: u64,
    /// Close a connection whose keepalive ping is not answered within this many seconds.
    #[arg(long, env = "BACKPROP_KEEPALIVE_TIMEOUT_SECS", default_value_t = 20)]
    keepalive_timeout_secs: u64,
    /// Send GOAWAY to a connection this many seconds old (its client reconnects); 0 = no
    /// maximum age.
    #[arg(long, env = "BACKPROP_MAX_CONNECTION_AGE_SECS", default_value_t = 3600)]
    max_connection_age_secs: u64,
    /// After that GOAWAY, seconds the calls in flight have to finish before the
    /// connection is closed.
    #[arg(
        long,
        env = "BACKPROP_MAX_CONNECTION_AGE_GRACE_SECS",
        default_value_t = 300
    )]
    max_connection_age_grace_secs: u64,
    /// Deadline, in seconds, of a call that sent no grpc-timeout (unary and
    /// client-streaming methods; server streams such as ExportModel and health Watch are
    /// exempt); it then gets DEADLINE_EXCEEDED. 0 = no default deadline.
    #[arg(long, env = "BACKPROP_DEFAULT_DEADLINE_SECS", default_value_t = 120)]
    default_deadline_secs: u64,
}

/// `--max-memory`: `auto` (a budget from the machine, see `session::budget`) or bytes.
#[derive(Clone, Copy, Debug)]
enum MemoryFlag {
    Auto,
    /// 0 = no budget.
    Bytes(u64),
}

fn parse_memory(text: &str) -> Result<MemoryFlag, String> {
    if text.trim().eq_ignore_ascii_case("auto") {
        Ok(MemoryFlag::Auto)
    } else {
        parse_bytes(text).map(MemoryFlag::Bytes)
    }
}

/// The `--max-memory` budget in bytes, `None` for no budget; `auto` is resolved here and
/// logged, since a budget the operator did not write down should be visible.
fn memory_budget(flag: MemoryFlag) -> Option<u64> {
    match flag {
        MemoryFlag::Bytes(0) => None,
        MemoryFlag::Bytes(n) => Some(n),
        MemoryFlag::Auto => match backprop::session::budget::default_memory_budget() {
            Some((bytes, source)) => {
                tracing::info!(bytes, ?source, "memory budget (--max-memory auto)");
                Some(bytes)
            }
            None => {
                tracing::warn!(
                    "cannot tell this machine's memory; no memory budget (set --max-memory)"
                );
                None
            }
        },
    }
}

/// `--replica-id`: a DNS label, or empty for none.
fn parse_replica(text: &str) -> Result<Replica, String> {
    match text {
        "" => Ok(Replica::default()),
        name => Replica::named(name),
    }
}

/// `123`, `512KiB`, `64MiB`, `8GiB` (also KB/MB/GB as powers of 1000) → bytes.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number of bytes like 512MiB or 8GiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is more bytes than fit in 64 bits"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: a log file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    init_logging(args.log_format);
    backprop::malloc::keep_step_buffers();
    backprop::engine::matmul_kernel::set_threads(args.matmul_threads);
    let defaults = Config::default();
    let secs = |n: u64| Duration::from_secs(n);
    let nonzero = |n: u64| (n > 0).then(|| Duration::from_secs(n));
    let save_interval =
        Duration::try_from_secs_f64(args.save_interval_secs.max(0.01)).map_err(|_| {
            format!(
                "--save-interval-secs {}: must be a number of seconds from 0.01 to {}",
                args.save_interval_secs,
                server::MAX_SAVE_INTERVAL.as_secs()
            )
        })?;
    let config = Config {
        limits: Limits {
            max_sessions: args.max_sessions,
            max_parameters: args.max_parameters,
            idle_ttl: (args.idle_ttl_secs > 0).then(|| Duration::from_secs(args.idle_ttl_secs)),
            max_memory: memory_budget(args.max_memory),
            max_call_memory: (args.max_call_memory > 0).then_some(args.max_call_memory),
            max_session_waiters: args.max_session_waiters,
            max_upload_memory: (args.max_upload_memory > 0).then_some(args.max_upload_memory),
            max_dataset_memory: (args.max_dataset_memory > 0).then_some(args.max_dataset_memory),
        },
        request_limits: RequestLimits {
            max_batch_elements: args.max_batch_elements,
            upload_stall: secs(args.upload_stall_secs),
            ..RequestLimits::default()
        },
        compute_threads: if args.compute_threads == 0 {
            defaults.compute_threads
        } else {
            args.compute_threads
        },
        queue_depth: args.queue_depth,
        max_message_bytes: args.max_message_mib.saturating_mul(1024 * 1024),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
        inline_max_work: args.inline_max_work,
        replica: args.replica_id,
        persist: args
            .state_dir
            .filter(|d| !d.as_os_str().is_empty())
            .map(|dir| PersistConfig {
                dir,
                every_steps: args.save_every_steps,
                interval: save_interval,
            }),
        auth: match &args.auth_tokens {
            Some(path) => Some(Tokens::load(path)?),
            None => None,
        },
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                Some(server::tls::load(cert, key, args.tls_client_ca.as_deref())?)
            }
            _ => None,
        },
        transport: server::Transport {
            max_connections: (args.max_connections > 0).then_some(args.max_connections),
            max_concurrent_streams: args.max_concurrent_streams,
            handshake_timeout: secs(args.handshake_timeout_secs),
            idle_timeout: nonzero(args.idle_timeout_secs),
            send_timeout: secs(args.send_timeout_secs),
            keepalive_interval: nonzero(args.keepalive_interval_secs),
            keepalive_timeout: secs(args.keepalive_timeout_secs),
            max_connection_age: nonzero(args.max_connection_age_secs),
            max_connection_age_grace: secs(args.max_connection_age_grace_secs),
            default_deadline: nonzero(args.default_deadline_secs),
        },
    };
    // Before binding: a refused configuration never listens.
    config.validate()?;
    let listener = server::listen::bind(args.listen)?;
    if let Some(path) = &args.address_file {
        // Written to a temporary name and renamed, so a reader never sees half an address.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, listener.local_addr()?.to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    let metrics = match args.metrics_listen {
        Some(addr) => {
            Some(server::listen::bind(addr).map_err(|e| format!("--metrics-listen {addr}: {e}"))?)
        }
        None => None,
    };
    let listeners = Listeners {
        grpc: listener,
        metrics,
    };
    server::run(listeners, config, shutdown_signal()).await
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("backprop: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Client(command) => return runtime.block_on(backprop::cli::run(command)),
    };
    let result = runtime.block_on(serve(args));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backprop: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
