//! The transport's limits on the real binary, each against the client that used to
//! starve the server: sockets that send nothing (handshake timeout, with TLS too), a
//! flood of streams on one connection (REFUSED_STREAM over the cap), a client that never
//! reads its responses (closed at the send timeout; the server's RSS stays bounded), a
//! process at its open-files limit (no busy accept loop), keepalive pings, the maximum
//! connection age (GOAWAY, then in-flight calls finish within the grace), the default
//! deadline, and the startup refusals. Raw HTTP/2 frames where a well-behaved client
//! library would hide the behaviour.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backprop::pb;
use backprop::pb::trainer_client::TrainerClient;
use support::pki::Pki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Channel;

// ---------------------------------------------------------------------------------------
// The server process

/// `backprop serve` on 127.0.0.1:0; killed when dropped.
struct Serve {
    child: Child,
    addr: String,
    pki: Pki,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(test: &str, args: &[&str]) -> Serve {
        Serve::start_with_fd_limit(test, args, None)
    }

    /// With `fd_limit`, through `sh -c 'ulimit -n N; exec backprop serve …'` (same pid).
    fn start_with_fd_limit(test: &str, args: &[&str], fd_limit: Option<u32>) -> Serve {
        let pki = Pki::new(&format!("ops-transport-{test}"));
        let bin = env!("CARGO_BIN_EXE_backprop");
        let mut serve: Vec<String> = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--compute-threads",
            "2",
            "--address-file",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        serve.push(pki.arg("address"));
        serve.extend(args.iter().map(|s| s.to_string()));
        let mut cmd = match fd_limit {
            None => {
                let mut c = Command::new(bin);
                c.args(&serve);
                c
            }
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(bin)
                    .args(&serve);
                c
            }
        };
        let child = cmd
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(pki.path("server.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start backprop serve");
        let addr = wait_for_file(&pki.path("address"));
        Serve { child, addr, pki }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.pki.path("server.log")).unwrap_or_default()
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    async fn client(&self) -> TrainerClient<Channel> {
        TrainerClient::new(self.channel().await)
    }

    async fn raw(&self) -> TcpStream {
        TcpStream::connect(&self.addr).await.expect("tcp connect")
    }

    /// The server's resident memory, bytes (`VmRSS` in /proc/PID/status).
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }

    /// CPU time the server has used (utime + stime in /proc/PID/stat).
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no side effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_secs_f64(ticks as f64 / hz as f64)
    }
}

fn wait_for_file(path: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the peer closes `s` (EOF or reset), discarding what it sends; the time it
/// took, or `None` if still open after `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = within.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw HTTP/2 frames

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), first byte's high bits 0.
fn hpack_int(out: &mut Vec<u8>, mut v: usize, n: u32) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(v as u8);
        return;
    }
    out.push(max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// A gRPC request's headers, each a literal without indexing (no Huffman, no table).
fn grpc_headers(path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0x00);
        hpack_int(&mut block, name.len(), 7);
        block.extend_from_slice(name.as_bytes());
        hpack_int(&mut block, value.len(), 7);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// One gRPC message: uncompressed flag, big-endian length, the bytes.
fn grpc_message(m: &impl prost::Message) -> Vec<u8> {
    let body = m.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

async fn read_frame(s: &mut TcpStream, within: Duration) -> Option<Frame> {
    let read = async {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.ok()?;
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.ok()?;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream,
            payload,
        })
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

/// A connection past its preface and empty SETTINGS; returns the server's SETTINGS
/// (id, value) pairs after acknowledging them.
async fn h2_handshake(s: &mut TcpStream) -> Vec<(u16, u32)> {
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    loop {
        let f = read_frame(s, Duration::from_secs(5))
            .await
            .expect("server SETTINGS");
        if f.kind == SETTINGS && f.flags & ACK == 0 {
            s.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
            return f
                .payload
                .chunks(6)
                .map(|c| {
                    (
                        u16::from_be_bytes([c[0], c[1]]),
                        u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                    )
                })
                .collect();
        }
    }
}

async fn open_stream(s: &mut TcpStream, stream: u32, path: &str, body: Option<&[u8]>) {
    let headers = grpc_headers(path);
    s.write_all(&frame(HEADERS, END_HEADERS, stream, &headers))
        .await
        .unwrap();
    if let Some(body) = body {
        s.write_all(&frame(DATA, END_STREAM, stream, body))
            .await
            .unwrap();
    }
}

async fn create_model(c: &mut TrainerClient<Channel>, input: u32, hidden: u32) -> String {
    let spec = pb::ModelSpec {
        input_dim: input,
        hidden: vec![pb::HiddenLayer {
            units: hidden,
            activation: pb::Activation::Relu as i32,
            ..Default::default()
        }],
        num_classes: 10,
        dtype: pb::Dtype::F64 as i32,
        ..Default::default()
    };
    c.create_model(pb::CreateModelRequest {
        spec: Some(spec),
        ..Default::default()
    })
    .await
    .expect("CreateModel")
    .into_inner()
    .model_id
}

async fn served(s: &Serve) {
    let mut c = s.client().await;
    c.list_models(pb::ListModelsRequest::default())
        .await
        .expect("a well-behaved client is served");
}

// ---------------------------------------------------------------------------------------
// Tests

/// 20 sockets that send nothing, against a cap of 8 connections: each is closed about a
/// handshake timeout after the server took it, and a real client queued behind them is
/// served once they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_are_closed_at_the_handshake_timeout() {
    let s = Serve::start(
        "silent",
        &["--handshake-timeout-secs", "1", "--max-connections", "8"],
    );
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(s.raw().await);
    }
    let start = Instant::now();
    let client = tokio::spawn({
        let addr = s.addr.clone();
        async move {
            let mut c = TrainerClient::new(
                Channel::from_shared(format!("http://{addr}"))
                    .unwrap()
                    .connect()
                    .await
                    .expect("connect"),
            );
            c.list_models(pb::ListModelsRequest::default())
                .await
                .map(|_| start.elapsed())
        }
    });
    let mut closed = Vec::new();
    for sock in &mut silent {
        closed_within(sock, Duration::from_secs(10))
            .await
            .expect("a silent socket is closed");
        closed.push(start.elapsed());
    }
    let waited = tokio::time::timeout(Duration::from_secs(10), client)
        .await
        .expect("the real client is served")
        .unwrap()
        .expect("ListModels");
    // The first 8 were taken at once and closed after 1 s, not before.
    assert!(closed[0] >= Duration::from_millis(900), "{closed:?}");
    // The later ones waited in the backlog for a slot first: three rounds of 1 s.
    assert!(closed[19] >= Duration::from_millis(1900), "{closed:?}");
    assert!(waited < Duration::from_secs(8), "{waited:?}");
}

/// With TLS, a client that starts a ClientHello and stops is closed at the handshake
/// timeout (rustls would wait for the rest forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_closed() {
    let probe = Pki::new("ops-transport-tls-files");
    let (cert, key) = (probe.arg("server.pem"), probe.arg("server.key"));
    let s = Serve::start(
        "tls",
        &[
            "--handshake-timeout-secs",
            "1",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    let mut sock = s.raw().await;
    // A TLS record header for a 500-byte handshake message, and the first 40 bytes of it.
    let mut hello = vec![0x16, 0x03, 0x01, 0x01, 0xf4, 0x01, 0x00, 0x01, 0xf0];
    hello.extend_from_slice(&[0u8; 40]);
    sock.write_all(&hello).await.unwrap();
    let took = closed_within(&mut sock, Duration::from_secs(5))
        .await
        .expect("the stalled TLS handshake is closed");
    assert!(took >= Duration::from_millis(800), "{took:?}");
}

/// A connection past its handshake with no call open is closed at the idle timeout; one
/// that keeps calling is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_calls_is_closed_at_the_idle_timeout() {
    let s = Serve::start(
        "idle",
        &["--handshake-timeout-secs", "1", "--idle-timeout-secs", "2"],
    );
    let mut idle = s.raw().await;
    h2_handshake(&mut idle).await;
    let start = Instant::now();
    let idle = tokio::spawn(async move {
        closed_within(&mut idle, Duration::from_secs(6))
            .await
            .map(|_| start.elapsed())
    });
    let mut busy = s.client().await;
    while start.elapsed() < Duration::from_secs(3) {
        busy.list_models(pb::ListModelsRequest::default())
            .await
            .expect("a connection in use stays open");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let at = idle.await.unwrap().expect("the idle connection is closed");
    assert!(
        at >= Duration::from_millis(1800) && at < Duration::from_secs(4),
        "closed after {at:?}"
    );
}

/// 20 half-sent streams on one connection against a cap of 8: the server announces the
/// cap and refuses the 12 over it; the 8 it took wait on their bodies, and another
/// connection is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_the_cap_are_refused() {
    let s = Serve::start("streams", &["--max-concurrent-streams", "8"]);
    let mut sock = s.raw().await;
    let settings = h2_handshake(&mut sock).await;
    assert!(
        settings.contains(&(SETTINGS_MAX_CONCURRENT_STREAMS, 8)),
        "{settings:?}"
    );
    let ids: Vec<u32> = (0..20).map(|i| 1 + 2 * i).collect();
    for &id in &ids {
        open_stream(&mut sock, id, "/backprop.v1.Trainer/ListModels", None).await;
    }
    let mut refused = Vec::new();
    while let Some(f) = read_frame(&mut sock, Duration::from_secs(2)).await {
        if f.kind == RST_STREAM {
            let code = u32::from_be_bytes(f.payload[..4].try_into().unwrap());
            assert_eq!(code, REFUSED_STREAM, "stream {}", f.stream);
            refused.push(f.stream);
        }
    }
    assert_eq!(refused, ids[8..].to_vec());
    served(&s).await;
}

/// A client that asks for a model's values on 16 streams and never reads: each round
/// holds 16 × 8 MB of encoded responses until the send timeout closes its connection.
/// Four rounds later the server holds no more than about one round's worth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_and_memory_stays_bounded() {
    let s = Serve::start("nonreader", &["--send-timeout-secs", "1"]);
    let mut c = s.client().await.max_decoding_message_size(64 << 20);
    // 1000 × 1000 + 1000 + 1000 × 10 + 10 f64 parameters: an 8 MB GetModel response.
    let id = create_model(&mut c, 1000, 1000).await;
    let request = grpc_message(&pb::GetModelRequest {
        model_id: id.clone(),
        include_values: true,
        ..Default::default()
    });
    let round_bytes = 16 * 8_088_010u64;
    let baseline = s.rss();
    let mut after = Vec::new();
    for _ in 0..4 {
        let mut sock = s.raw().await;
        // No SETTINGS ACK and no WINDOW_UPDATE: the server may send 64 KiB in all.
        sock.write_all(PREFACE).await.unwrap();
        sock.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        for i in 0..16 {
            open_stream(
                &mut sock,
                1 + 2 * i,
                "/backprop.v1.Trainer/GetModel",
                Some(&request),
            )
            .await;
        }
        // Not reading: the send timeout (1 s, checked again within 1 s) must act alone.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert!(
            closed_within(&mut sock, Duration::from_millis(500))
                .await
                .is_some(),
            "the non-reading connection is still open"
        );
        after.push(s.rss());
    }
    // The first round's memory is reused by the next three (glibc keeps it in the heap,
    // src/malloc.rs); held responses would add a round's worth each time.
    let grown = after[3].saturating_sub(after[0]);
    assert!(
        grown < round_bytes,
        "RSS grew by {grown} bytes over rounds 2-4 of {round_bytes} (baseline {baseline}, after each round {after:?})"
    );
    let got = c
        .get_model(pb::GetModelRequest {
            model_id: id,
            include_values: true,
            ..Default::default()
        })
        .await
        .expect("a reading client gets the values");
    assert_eq!(got.into_inner().parameters.len(), 4);
}

/// Answers waiting for a reader hold their bytes against the memory budget until they
/// are sent or dropped: unread 8 MB GetModel answers fill a 64 MiB budget, a reading
/// client is then refused (RESOURCE_EXHAUSTED, retry later) instead of the server
/// holding unbounded answers, and once the silent connection goes the room comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_answers_count_against_the_memory_budget_until_they_go() {
    let s = Serve::start(
        "unread",
        &["--max-memory", "64MiB", "--send-timeout-secs", "60"],
    );
    let mut c = s.client().await.max_decoding_message_size(64 << 20);
    // An 8 MB answer (8,088,010 bytes of f64 values); the session itself holds as much.
    let id = create_model(&mut c, 1000, 1000).await;
    let values = || pb::GetModelRequest {
        model_id: id.clone(),
        include_values: true,
        ..Default::default()
    };
    c.get_model(values()).await.expect("alone, the answer fits");
    let request = grpc_message(&values());
    let mut sock = s.raw().await;
    sock.write_all(PREFACE).await.unwrap();
    sock.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    // One at a time, so each is admitted alone (its peak, ~18 MB, then only its answer
    // held): 16 unread answers would be 130 MB; the budget holds 6 beside the session.
    for i in 0..16 {
        open_stream(
            &mut sock,
            1 + 2 * i,
            "/backprop.v1.Trainer/GetModel",
            Some(&request),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let e = match c.get_model(values()).await {
        Ok(_) => panic!("served while unread answers fill the budget"),
        Err(e) => e,
    };
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{}", e.message());
    assert!(
        e.message()
            .contains("memory budget (67108864 bytes, --max-memory)"),
        "{}",
        e.message()
    );
    drop(sock);
    let mut served = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(r) = c.get_model(values()).await {
            served = Some(r.into_inner());
            break;
        }
    }
    let got = served.expect("the answers' bytes came back when their connection went");
    assert_eq!(got.parameters.len(), 4);
}

/// At `ulimit -n 64` with a connection cap above it, accept fails with EMFILE: the loop
/// backs off instead of spinning, and once the silent sockets are closed a real client is
/// served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_accept_loop_does_not_spin() {
    let s = Serve::start_with_fd_limit(
        "emfile",
        &["--handshake-timeout-secs", "3", "--max-connections", "1000"],
        Some(64),
    );
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(s.raw().await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = s.cpu();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let used = s.cpu() - before;
    assert!(
        used < Duration::from_millis(300),
        "the server used {used:?} of CPU in 2 s at its descriptor limit"
    );
    assert!(
        s.log().contains("backing off"),
        "no back-off in the log:\n{}",
        s.log()
    );
    drop(silent);
    tokio::time::timeout(Duration::from_secs(10), served(&s))
        .await
        .expect("served after the silent sockets are gone");
}

/// Without `--max-connections`, the cap is three quarters of `ulimit -n` (48 of 64), so
/// the process never reaches its limit: no back-off, no spinning, and a client is served
/// after the silent sockets time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_connection_cap_follows_the_descriptor_limit() {
    let s = Serve::start_with_fd_limit("fdcap", &["--handshake-timeout-secs", "2"], Some(64));
    let mut silent = Vec::new();
    for _ in 0..60 {
        silent.push(s.raw().await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = s.cpu();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let used = s.cpu() - before;
    assert!(used < Duration::from_millis(300), "{used:?}");
    tokio::time::timeout(Duration::from_secs(10), served(&s))
        .await
        .expect("served once the silent sockets time out");
    let log = s.log();
    assert!(log.contains("\"max_connections\":48"), "{log}");
    assert!(!log.contains("backing off"), "{log}");
}

/// The server pings a quiet connection every keepalive interval and closes one that
/// does not answer within the keepalive timeout; one that answers stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_keepalive_pings_close_the_connection() {
    let s = Serve::start(
        "keepalive",
        &[
            "--keepalive-interval-secs",
            "1",
            "--keepalive-timeout-secs",
            "1",
            "--idle-timeout-secs",
            "0",
        ],
    );
    let (mut mute, mut polite) = (s.raw().await, s.raw().await);
    h2_handshake(&mut mute).await;
    h2_handshake(&mut polite).await;
    let start = Instant::now();
    let mut answered = 0;
    while start.elapsed() < Duration::from_secs(4) {
        if let Some(f) = read_frame(&mut polite, Duration::from_millis(200)).await
            && f.kind == PING
            && f.flags & ACK == 0
        {
            polite
                .write_all(&frame(PING, ACK, 0, &f.payload))
                .await
                .unwrap();
            answered += 1;
        }
    }
    assert!(answered >= 2, "{answered} pings in 4 s");
    let mut pinged = false;
    let mut closed = false;
    while let Some(f) = read_frame(&mut mute, Duration::from_secs(3)).await {
        pinged |= f.kind == PING;
    }
    if closed_within(&mut mute, Duration::from_millis(100))
        .await
        .is_some()
    {
        closed = true;
    }
    assert!(pinged, "the quiet connection was never pinged");
    assert!(closed, "the connection that never answered is still open");
    assert!(
        read_frame(&mut polite, Duration::from_millis(100))
            .await
            .is_none_or(|f| f.kind != GOAWAY)
    );
}

/// At the maximum age a connection gets GOAWAY; a call in flight then still completes
/// within the grace, and at age + grace the connection is closed under whatever is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_connection_gets_goaway_and_in_flight_calls_finish() {
    let s = Serve::start(
        "age",
        &[
            "--max-connection-age-secs",
            "1",
            "--max-connection-age-grace-secs",
            "3",
            "--idle-timeout-secs",
            "0",
            "--default-deadline-secs",
            "0",
        ],
    );
    // The checkpoint to import, fetched on a connection of its own.
    let chunks: Vec<pb::CheckpointChunk> = {
        let mut c = s.client().await;
        let id = create_model(&mut c, 4, 8).await;
        let mut stream = c
            .export_model(pb::ExportModelRequest {
                model_id: id,
                chunk_bytes: 0,
            })
            .await
            .expect("ExportModel")
            .into_inner();
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.message().await.expect("chunk") {
            chunks.push(chunk);
        }
        chunks
    };

    // A raw connection holding a half-sent call: GOAWAY at 1 s, closed at 1 + 3 s.
    let mut raw = s.raw().await;
    h2_handshake(&mut raw).await;
    let start = Instant::now();
    open_stream(&mut raw, 1, "/backprop.v1.Trainer/ListModels", None).await;
    // An import that starts now and ends after the GOAWAY.
    let mut c = s.client().await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let import = tokio::spawn(async move {
        c.import_model(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let mut goaway = None;
    while let Some(f) = read_frame(&mut raw, Duration::from_secs(3)).await {
        if f.kind == GOAWAY {
            goaway = Some(start.elapsed());
            break;
        }
    }
    let goaway = goaway.expect("GOAWAY");
    assert!(
        goaway >= Duration::from_millis(900) && goaway < Duration::from_millis(2500),
        "{goaway:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for chunk in chunks {
        tx.send(chunk).await.unwrap();
    }
    drop(tx);
    let imported = import
        .await
        .unwrap()
        .expect("the in-flight import completes within the grace");
    assert!(!imported.into_inner().model_id.is_empty());
    closed_within(&mut raw, Duration::from_secs(6))
        .await
        .expect("closed at age + grace");
    let at = start.elapsed();
    assert!(
        at >= Duration::from_millis(3500) && at < Duration::from_secs(6),
        "closed at {at:?}"
    );
}

/// A call without grpc-timeout gets the default deadline (DEADLINE_EXCEEDED, saying
/// which); one with its own deadline keeps it; a server stream (health Watch) is exempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_deadline_get_the_default_one() {
    let s = Serve::start("deadline", &["--default-deadline-secs", "1"]);
    let mut c = s.client().await;

    // A client stream that never sends anything nor ends.
    let (_tx, rx) = tokio::sync::mpsc::channel::<pb::CheckpointChunk>(1);
    let start = Instant::now();
    let err = c
        .import_model(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect_err("a stalled import ends");
    let took = start.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("default deadline"), "{err:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // The caller's own 3 s deadline wins over the 1 s default.
    let (_tx, rx) = tokio::sync::mpsc::channel::<pb::CheckpointChunk>(1);
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.set_timeout(Duration::from_secs(3));
    let start = Instant::now();
    let err = c.import_model(req).await.expect_err("ends at its deadline");
    assert!(start.elapsed() >= Duration::from_millis(2800), "{err:?}");
    assert!(!err.message().contains("default deadline"), "{err:?}");

    // A health Watch stream outlives the default deadline.
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel().await);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("Watch")
        .into_inner();
    watch.message().await.expect("first status").expect("some");
    let next = tokio::time::timeout(Duration::from_secs(3), watch.message()).await;
    assert!(next.is_err(), "the Watch stream ended early: {next:?}");
}

/// Settings that would start a server failing every call, or panicking, are refused
/// before it listens, each with its flag named.
#[test]
fn bad_settings_are_refused_at_startup() {
    let pki = Pki::new("ops-transport-refusals");
    let state = pki.arg("state");
    let file = pki.arg("ca.pem");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--state-dir", &state, "--save-interval-secs", "1e300"],
            "--save-interval-secs",
        ),
        (
            vec!["--state-dir", &state, "--save-interval-secs", "1e9"],
            "--save-interval-secs",
        ),
        (vec!["--max-message-mib", "0"], "--max-message-mib"),
        (
            vec!["--max-concurrent-streams", "0"],
            "--max-concurrent-streams",
        ),
        (vec!["--upload-stall-secs", "0"], "--upload-stall-secs"),
        // /proc exists and is not writable, for root too.
        (
            vec!["--state-dir", "/proc"],
            "--state-dir /proc: cannot write",
        ),
        // A regular file where the directory should be.
        (vec!["--state-dir", &file], "cannot write"),
    ];
    for (args, needle) in cases {
        let address = pki.path("address");
        let out = Command::new(env!("CARGO_BIN_EXE_backprop"))
            .args(["serve", "--listen", "127.0.0.1:0", "--address-file"])
            .arg(&address)
            .args(&args)
            .env_remove("BACKPROP_STATE_DIR")
            .output()
            .expect("run backprop serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!address.exists(), "{args:?} listened");
    }
}
