//! The operations flags end to end on the real binary: `backprop serve` with
//! `--auth-tokens`, mutual TLS and `--metrics-listen`, and the client subcommands with
//! `--token`/`BACKPROP_TOKEN`, `--tls-ca`, `--tls-cert`, `--tls-key`. At the end, the
//! server's own log (debug level) holds model ids but no token.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::pki::Pki;

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-fedcba9876543210";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `backprop ARGS` with `env` and none of the BACKPROP_* client variables
/// inherited.
fn backprop_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backprop"));
    for var in [
        "BACKPROP_ADDRESS",
        "BACKPROP_TOKEN",
        "BACKPROP_TLS_CA",
        "BACKPROP_CLIENT_TLS_CERT",
        "BACKPROP_CLIENT_TLS_KEY",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run the backprop binary");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
    run
}

/// The server process; killed when dropped (a failed test leaves nothing running).
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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

/// The metrics URL the server logged (`metrics_at`, one JSON object a line).
fn metrics_address(log: &Path) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text.lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let url = v.get("metrics_at")?.as_str()?;
            Some(
                url.strip_prefix("http://")?
                    .strip_suffix("/metrics")?
                    .to_string(),
            )
        });
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no metrics_at in\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read /metrics");
    text
}

#[test]
fn client_subcommands_pass_token_and_tls_options() {
    let pki = Pki::new("ops-cli");
    let tokens = pki.path("tokens.txt");
    std::fs::write(
        &tokens,
        format!("# test tenants\n{ALICE} alice max_sessions=1\n{BOB} bob\n"),
    )
    .unwrap();
    let (address_file, log) = (pki.path("address"), pki.path("server.log"));
    let server = Command::new(env!("CARGO_BIN_EXE_backprop"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--address-file", &pki.arg("address")])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(["--auth-tokens", tokens.to_str().unwrap()])
        .args(["--tls-cert", &pki.arg("server.pem")])
        .args(["--tls-key", &pki.arg("server.key")])
        .args(["--tls-client-ca", &pki.arg("ca.pem")])
        .args(["--compute-threads", "1"])
        .env("RUST_LOG", "debug")
        .stdout(File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start backprop serve");
    let mut server = Serve(server);
    let addr = wait_for_file(&address_file);
    let metrics = metrics_address(&log);

    let (ca, cert, key) = (
        pki.arg("ca.pem"),
        pki.arg("client.pem"),
        pki.arg("client.key"),
    );
    let tls: Vec<&str> = vec![
        "--address",
        &addr,
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        extra
            .iter()
            .chain(tls.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: Vec<String>, env: &[(&str, &str)]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        backprop_env(&args, env)
    };

    // Health needs TLS but no token.
    let r = run(with(&["health"]), &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // Without a token: UNAUTHENTICATED, said plainly.
    let r = run(with(&["models"]), &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("UNAUTHENTICATED"), "{}", r.stderr);
    // A wrong token, from the environment.
    let r = run(
        with(&["models"]),
        &[("BACKPROP_TOKEN", "not-a-known-token-at-all")],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("UNAUTHENTICATED"), "{}", r.stderr);
    assert!(!r.stderr.contains("not-a-known-token"), "{}", r.stderr);

    // Alice trains a model (train connects like every other subcommand).
    let csv = pki.path("tiny.csv");
    let rows: String = (0..40)
        .map(|i| format!("{},{}.0,{}.5\n", i % 2, i % 2 * 4, i % 5))
        .collect();
    std::fs::write(&csv, format!("label,a,b\n{rows}")).unwrap();
    let r = run(
        with(&[
            "train",
            "--data",
            csv.to_str().unwrap(),
            "--hidden",
            "4",
            "--epochs",
            "2",
            "--token",
            ALICE,
        ]),
        &[],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let id = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("model ")?.split(':').next())
        .unwrap_or_else(|| panic!("no model id in\n{}", r.stdout))
        .to_string();
    assert_eq!(id.len(), 32);

    // Alice lists it (token from the environment); Bob does not see it.
    let r = run(with(&["models", "--json"]), &[("BACKPROP_TOKEN", ALICE)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&id), "{}", r.stdout);
    let r = run(with(&["models", "--json", "--token", BOB]), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), r#"{"models":[]}"#);
    let r = run(with(&["show", &id, "--token", BOB]), &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("NOT_FOUND"), "{}", r.stderr);
    // Alice's limit is one session.
    let r = run(
        with(&[
            "train",
            "--data",
            csv.to_str().unwrap(),
            "--epochs",
            "1",
            "--token",
            ALICE,
        ]),
        &[],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("max_sessions"), "{}", r.stderr);

    // Mutual TLS: without a client certificate, or with a stranger's, no connection; nor
    // in plaintext.
    let (stranger, stranger_key) = (pki.arg("stranger.pem"), pki.arg("stranger.key"));
    let plaintext = format!("http://{addr}");
    for refused in [
        vec!["--address", &addr, "--tls-ca", &ca],
        vec![
            "--address",
            &addr,
            "--tls-ca",
            &ca,
            "--tls-cert",
            &stranger,
            "--tls-key",
            &stranger_key,
        ],
        vec!["--address", &plaintext],
    ] {
        let args: Vec<&str> = ["health", "--timeout-secs", "5"]
            .into_iter()
            .chain(refused)
            .collect();
        let r = backprop_env(&args, &[]);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stdout);
    }
    // --tls-cert without --tls-key is a usage error, before any connection.
    let r = backprop_env(
        &[
            "models",
            "--address",
            &addr,
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
        ],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);

    let r = run(with(&["delete", &id, "--token", ALICE]), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // The metrics saw it all: 2 refused ListModels, 1 Bob's GetModel, 1 refused create.
    let text = scrape(&metrics);
    for line in [
        r#"backprop_requests_total{method="ListModels",code="UNAUTHENTICATED"} 2"#,
        r#"backprop_requests_total{method="GetModel",code="NOT_FOUND"} 1"#,
        r#"backprop_requests_total{method="CreateModel",code="OK"} 1"#,
        r#"backprop_requests_total{method="CreateModel",code="RESOURCE_EXHAUSTED"} 1"#,
        r#"backprop_requests_total{method="DeleteModel",code="OK"} 1"#,
        "backprop_sessions 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }

    let _ = server.0.kill();
    let _ = server.0.wait();
    let logs = std::fs::read_to_string(&log).unwrap();
    let created = logs
        .lines()
        .find(|l| l.contains("\"created\"") && l.contains(&id))
        .unwrap_or_else(|| panic!("no 'created' line for {id} in\n{logs}"));
    assert!(
        created.contains("\"INFO\"") && created.contains("alice"),
        "{created}"
    );
    assert!(logs.contains("unknown bearer token"), "{logs}");
    for token in [ALICE, BOB, "not-a-known-token"] {
        assert!(
            !logs.contains(token),
            "a token in the server's log:\n{logs}"
        );
    }
}

/// A server without --state-dir says at start that sessions live in memory only, and at
/// shutdown how many it drops; its log has no colour codes when it is not a terminal.
#[tokio::test]
async fn a_memory_only_server_says_what_it_keeps_and_drops() {
    let dir = support::process::scratch("memory-only");
    let server = support::process::Binary::start(&dir, &[]).await;
    let mut c = server.client.clone();
    for _ in 0..2 {
        support::create(&mut c, support::wire_spec(3, &[], 2)).await;
    }
    assert_eq!(server.terminate().await, Some(0));
    let log = support::process::stdout(&dir);
    assert!(
        log.contains("no --state-dir: sessions are kept in memory only"),
        "{log}"
    );
    assert!(
        log.contains("stopping without a state directory: 2 session(s) dropped"),
        "{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {log:?}"
    );
}
