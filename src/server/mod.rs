//! Runs the service on a bound listener until a shutdown future resolves: the Trainer,
//! `grpc.health.v1.Health` and server reflection (v1 and v1alpha, for grpcurl and ghz).
//! Taking a bound listener lets tests start the very same server on `127.0.0.1:0`.
//!
//! - [`connections`]: the accept loop, connection timers and the per-call layer that
//!   keep idle, half-open and non-reading clients from holding the server's resources.
//! - `error_info`: the last pass that gives every error the Trainer answers an ErrorInfo,
//!   and tonic's size-limit refusal the RESOURCE_EXHAUSTED of every other limit.
//! - `metrics`: calls counted and timed by method and status; `/metrics`.
//! - [`listen`]: the listening sockets, with a backlog sized for the connection cap.
//! - [`tls`]: the certificate, key and client CA files, checked at startup.
pub mod connections;
mod error_info;
pub mod listen;
mod metrics;
pub mod tls;
use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

pub use self::connections::Transport;
use crate::metrics::{Gauges, Metrics};
use crate::pb;
use crate::pb::trainer_server::TrainerServer;
use crate::service::auth::{Authenticate, Authenticated, Tokens};
use crate::service::{RequestLimits, TrainerService};
use crate::session::{ComputePool, Limits, PersistConfig, Persister, Replica, SessionStore};

#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    pub request_limits: RequestLimits,
    /// Threads doing model math.
    pub compute_threads: usize,
    /// Jobs that may wait for a compute thread before calls get RESOURCE_EXHAUSTED.
    pub queue_depth: usize,
    /// Largest request or response message, both ways.
    pub max_message_bytes: usize,
    /// After shutdown is asked for, how long in-flight calls may take to finish.
    pub shutdown_grace: Duration,
    /// Calls estimated at or below this many multiply-adds compute on the async worker
    /// instead of the pool (0 = never); see `service::rpc::DEFAULT_INLINE_MAX_WORK`.
    pub inline_max_work: u64,
    /// The replica this server is among several behind a proxy (`--replica-id`): its
    /// ids carry the name (see `session::id`, `service::route`).
    pub replica: Replica,
    /// Keep sessions in this directory across restarts (`None`: in memory only).
    pub persist: Option<PersistConfig>,
    /// Bearer tokens and their tenants (`--auth-tokens`); `None` = no authentication, every
    /// caller is the anonymous tenant.
    pub auth: Option<Tokens>,
    /// Serve TLS (and mutual TLS with a client CA), from [`tls::load`]; `None` = plaintext.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Connections, streams, timeouts and the default deadline.
    pub transport: Transport,
}

/// A configuration the server refuses to start with; each names its flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--max-message-mib must be at least 1: no request or response would fit in 0 bytes")]
    ZeroMessageSize,
    #[error("--{flag} must be at least 1")]
    Zero { flag: &'static str },
    #[error(
        "--save-interval-secs {secs}: must be at most {max} (one year)",
        secs = .0.as_secs_f64(),
        max = MAX_SAVE_INTERVAL.as_secs()
    )]
    SaveInterval(Duration),
    #[error("--state-dir {dir}: cannot write there ({source}); sessions could not be saved")]
    StateDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

/// The longest `--save-interval-secs`: past it, "save on the interval" means never, and
/// timer arithmetic on the interval could overflow.
pub const MAX_SAVE_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);

impl Config {
    /// Refuses what would start a server that then fails every call, or panics: a 0 MiB
    /// message limit, zero stream or connection caps, a save interval beyond a year, and
    /// a state directory we cannot write to (checked by writing and removing a probe
    /// file, so a read-only mount or a directory owned by someone else is caught now,
    /// not at the first save).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_message_bytes == 0 {
            return Err(ConfigError::ZeroMessageSize);
        }
        let t = &self.transport;
        for (flag, zero) in [
            ("max-concurrent-streams", t.max_concurrent_streams == 0),
            ("max-connections", t.max_connections == Some(0)),
            ("handshake-timeout-secs", t.handshake_timeout.is_zero()),
            ("send-timeout-secs", t.send_timeout.is_zero()),
            ("keepalive-timeout-secs", t.keepalive_timeout.is_zero()),
            (
                "upload-stall-secs",
                self.request_limits.upload_stall.is_zero(),
            ),
        ] {
            if zero {
                return Err(ConfigError::Zero { flag });
            }
        }
        if let Some(persist) = &self.persist {
            if persist.interval > MAX_SAVE_INTERVAL {
                return Err(ConfigError::SaveInterval(persist.interval));
            }
            probe_writable(&persist.dir).map_err(|source| ConfigError::StateDir {
                dir: persist.dir.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Creates `dir` if needed, then writes, syncs and removes a probe file in it. The name
/// ends like an unfinished checkpoint write, so a probe left by a crash is removed at
/// the next start like any other.
fn probe_writable(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(
        ".write-probe-{}{}",
        std::process::id(),
        crate::checkpoint::file::TEMP_SUFFIX
    ));
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(b"probe")?;
        f.sync_all()
    });
    let removed = std::fs::remove_file(&probe);
    written.and(removed)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            request_limits: RequestLimits::default(),
            compute_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_depth: 1024,
            max_message_bytes: 64 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            inline_max_work: crate::service::rpc::DEFAULT_INLINE_MAX_WORK,
            replica: Replica::default(),
            persist: None,
            auth: None,
            tls: None,
            transport: Transport::default(),
        }
    }
}

/// The sockets a server answers on: gRPC, and Prometheus metrics if wanted. A bare
/// `TcpListener` converts into one without metrics.
pub struct Listeners {
    pub grpc: TcpListener,
    /// Plaintext HTTP/1.1 `GET /metrics`; `None` = no metrics recorded at all.
    pub metrics: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(grpc: TcpListener) -> Self {
        Listeners {
            grpc,
            metrics: None,
        }
    }
}

/// The largest HTTP/2 DATA frame clients may send us. The default (16 KiB) cuts a W1
/// batch (2.5 MB) into ~150 frames; with 1 MiB frames the same request crosses loopback
/// in about half the time (bench `--workload w1` transport floor, p50 2.4–2.9 ms → 1.1–1.3
/// ms, docs/PERFORMANCE.md).
const H2_MAX_FRAME: u32 = 1 << 20;
/// Flow-control windows, per stream and per connection, so a large batch is not held up
/// waiting for window updates.
const H2_WINDOW: u32 = 16 << 20;

/// Serves until `shutdown` resolves, then lets in-flight calls finish for at most
/// `config.shutdown_grace`. Refuses a configuration [`Config::validate`] refuses.
pub async fn run(
    listeners: impl Into<Listeners>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    config.validate()?;
    let Listeners {
        grpc: listener,
        metrics: metrics_listener,
    } = listeners.into();
    let metrics = match metrics_listener {
        Some(_) => Metrics::new(),
        None => Metrics::disabled(),
    };
    let pool =
        ComputePool::new(config.compute_threads, config.queue_depth)?.with_metrics(metrics.clone());
    let store = match config.persist.clone() {
        None => {
            tracing::warn!(
                "no --state-dir: sessions are kept in memory only and are lost when the \
                 server stops"
            );
            SessionStore::on(config.replica, config.limits.clone(), None)
        }
        Some(persist) => {
            let dir = persist.dir.display().to_string();
            let persister = Persister::open(persist, pool.clone())?.with_metrics(metrics.clone());
            let (reader, replica) = (persister.clone(), config.replica);
            let restored = tokio::task::spawn_blocking(move || reader.restore(replica)).await??;
            let store = SessionStore::on(replica, config.limits.clone(), Some(persister));
            let n = store.restore(restored);
            let reader = store.clone();
            let datasets = tokio::task::spawn_blocking(move || reader.restore_datasets()).await??;
            tracing::info!(sessions = n, datasets, %dir, "restored from the state directory");
            store
        }
    };
    let _reaper = store.spawn_reaper();
    let _saver = store.spawn_saver();
    let metrics_at = match &metrics_listener {
        Some(l) => format!("http://{}/metrics", l.local_addr()?),
        None => "off".to_string(),
    };
    let _metrics_server = metrics_listener.map(|l| {
        let (store, pool) = (store.clone(), pool.clone());
        metrics::serve(l, metrics.clone(), move || Gauges {
            sessions: store.len(),
            parameters: store.parameters_held(),
            queue_depth: pool.queued(),
            memory_sessions: store.bytes_held(),
            memory_reserved: store.bytes_reserved(),
            memory_budget: store.limits().max_memory,
        })
    });
    let trainer = TrainerService::new(store.clone(), pool, config.request_limits.clone())
        .with_inline_max_work(config.inline_max_work)
        .with_max_message_bytes(config.max_message_bytes)
        .with_metrics(metrics.clone());
    let auth = Authenticate::new(config.auth.clone());
    let trainer = error_info::WithErrorInfo::new(
        Authenticated::new(
            TrainerServer::new(trainer)
                .max_decoding_message_size(config.max_message_bytes)
                .max_encoding_message_size(config.max_message_bytes),
            auth.clone(),
        ),
        metrics.clone(),
        config.max_message_bytes,
    );
    let trainer = metrics::Observed::new(trainer, metrics.clone());

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<TrainerServer<TrainerService>>().await;
    let following = crate::service::health::follow_saves(&store, health.clone());
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1 = Authenticated::new(reflection_v1, auth.clone());
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let reflection_v1alpha = Authenticated::new(reflection_v1alpha, auth);

    let addr = listener.local_addr()?;
    let transport = &config.transport;
    let incoming = connections::incoming(listener, transport);
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_streams, streams_stopping) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: refusing new calls, finishing in-flight ones");
        // Server streams (a fit's events, a training stream) end now, with UNAVAILABLE.
        let _ = stop_streams.send(true);
        drop(following);
        health
            .set_not_serving::<TrainerServer<TrainerService>>()
            .await;
        // The whole server ("") is going away too: load balancers asking about it should
        // stop sending calls now, not when the process exits.
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        let _ = stopping_tx.send(());
    };
    let max_connections = transport
        .max_connections
        .unwrap_or_else(connections::default_max_connections);
    tracing::info!(%addr, replica = %config.replica, threads = config.compute_threads, %metrics_at, auth = config.auth.is_some(), tls = config.tls.is_some(), max_connections, max_concurrent_streams = transport.max_concurrent_streams, "serving backprop.v1.Trainer");
    let mut builder = tls::builder(config.tls.as_ref(), transport.handshake_timeout)?
        .max_frame_size(H2_MAX_FRAME)
        .initial_stream_window_size(H2_WINDOW)
        .initial_connection_window_size(H2_WINDOW)
        .max_concurrent_streams(transport.max_concurrent_streams)
        .http2_keepalive_interval(transport.keepalive_interval)
        .http2_keepalive_timeout(Some(transport.keepalive_timeout));
    if let Some(age) = transport.max_connection_age {
        // GOAWAY at `age`; the connection's own timer closes it at age + grace (tonic's
        // grace option would skip the GOAWAY, see `connections`).
        builder = builder.max_connection_age(age);
    }
    let serve = builder
        .layer(connections::TrackCalls::new(transport, streams_stopping))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(trainer)
        .serve_with_incoming_shutdown(incoming, signal);
    let grace = config.shutdown_grace;
    let deadline = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = serve => r?,
        _ = deadline => tracing::warn!(?grace, "in-flight calls did not finish within the grace period; stopping anyway"),
    }
    if config.persist.is_none() && !store.is_empty() {
        tracing::warn!(
            sessions = store.len(),
            "stopping without a state directory: {} session(s) dropped",
            store.len()
        );
    }
    if config.persist.is_some() {
        // Every acknowledged step is on disk before the process exits, or the exit says
        // it is not (the binary exits non-zero).
        let failed = store.save_all().await;
        if failed > 0 {
            tracing::error!(failed, "some sessions could not be saved at shutdown");
            return Err(format!(
                "{failed} session(s) could not be saved to the state directory at shutdown; \
                 their latest acknowledged steps are not on disk (see the log)"
            )
            .into());
        }
        tracing::info!(sessions = store.len(), "saved every session");
    }
    tracing::info!("stopped");
    Ok(())
}
