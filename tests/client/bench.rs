//! `backprop bench` end to end: the real server runs in-process on `127.0.0.1:0`, the
//! built binary load-tests it with tiny totals, and the JSON report must add up (calls
//! counted, no errors, ordered percentiles, the health ratio for W2) and the server must
//! be left without the sessions the run created. No timing is asserted: these machines
//! are shared and noisy.

use std::path::PathBuf;
use std::process::Command;

use backprop::pb;
use backprop::server::Config;
use backprop::service::RequestLimits;
use serde_json::Value;
use support::{TestServer, test_config};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    json: Option<Value>,
}

/// Runs `backprop bench ARGS --json FILE` off the async runtime (the server lives on it),
/// and reads the report back.
async fn bench(name: &str, args: &[&str]) -> Run {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let json = dir.join(format!("bench-{name}-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&json);
    let mut command = Command::new(env!("CARGO_BIN_EXE_backprop"));
    command
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .env_remove("BACKPROP_ADDRESS");
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run the backprop binary");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        json: std::fs::read_to_string(&json)
            .ok()
            .map(|t| serde_json::from_str(&t).expect("the report is JSON")),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "bench {args:?} panicked:\n{}",
        run.stderr
    );
    run
}

/// The report of a run that must succeed.
async fn bench_ok(name: &str, args: &[&str]) -> Value {
    let run = bench(name, args).await;
    assert_eq!(
        run.code, 0,
        "bench {args:?}:\n{}\n{}",
        run.stdout, run.stderr
    );
    run.json.expect("a JSON report")
}

/// A phase's figures: `requests` calls, all OK, percentiles in order.
fn assert_sane(figures: &Value, requests: u64) {
    assert_eq!(figures["requests"], requests, "{figures:#}");
    assert_eq!(figures["ok"], requests, "{figures:#}");
    assert_eq!(figures["errors"], serde_json::json!({}), "{figures:#}");
    assert!(figures["rps"].as_f64().unwrap() > 0.0, "{figures:#}");
    let latency = &figures["latency_ms"];
    let ms = |k: &str| latency[k].as_f64().expect(k);
    assert!(ms("p50") > 0.0, "{figures:#}");
    assert!(
        ms("p50") <= ms("p90") && ms("p90") <= ms("p99") && ms("p99") <= ms("max"),
        "{figures:#}"
    );
}

async fn models(server: &TestServer) -> Vec<pb::ModelSummary> {
    server
        .trainer()
        .list_models(pb::ListModelsRequest::default())
        .await
        .expect("ListModels")
        .into_inner()
        .models
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let report = bench_ok(
        "health",
        &[
            "--workload",
            "health",
            "--total",
            "200",
            "--warmup",
            "0",
            "--address",
            &addr,
        ],
    )
    .await;
    assert_sane(&report["result"], 200);
    assert_eq!(report["call"], "Health/Check");
    assert_eq!(
        (&report["concurrency"], &report["connections"]),
        (&50.into(), &2.into())
    );
    assert!(report.get("health").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w2_forward_with_health_ratio() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let run = bench(
        "w2-forward",
        &[
            "--workload",
            "w2-forward",
            "--total",
            "200",
            "--warmup",
            "0.1",
            "--concurrency",
            "8",
            "--connections",
            "3",
            "--address",
            &addr,
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("Trainer/Forward / Health/Check requests/s"),
        "{}",
        run.stdout
    );
    let report = run.json.unwrap();
    assert_sane(&report["result"], 200);
    assert_sane(&report["health"], 200);
    assert!(report["ratio_to_health"].as_f64().unwrap() > 0.0);
    assert_eq!(report["sessions"], 1);
    assert_eq!(report["deleted_sessions"], 1);
    assert!(models(&server).await.is_empty());
}

/// One session per caller, each trained exactly by its share of the calls (no warm-up),
/// and `--keep` leaves them for us to count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w2_train_one_session_per_caller() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let report = bench_ok(
        "w2-train",
        &[
            "--workload",
            "w2-train",
            "--total",
            "200",
            "--warmup",
            "0",
            "--concurrency",
            "10",
            "--keep",
            "--address",
            &addr,
        ],
    )
    .await;
    assert_sane(&report["result"], 200);
    assert_sane(&report["health"], 200);
    assert_eq!(report["sessions"], 10);
    assert!(report.get("deleted_sessions").is_none());
    let kept = models(&server).await;
    assert_eq!(kept.len(), 10);
    assert_eq!(kept.iter().map(|m| m.step).sum::<u64>(), 200);
    assert!(kept.iter().all(|m| m.parameter_count == 131));

    // Without --keep the run cleans up after itself.
    let report = bench_ok(
        "w2-train-clean",
        &[
            "--workload",
            "w2-train",
            "--total",
            "50",
            "--warmup",
            "0",
            "--concurrency",
            "5",
            "--address",
            &addr,
        ],
    )
    .await;
    assert_eq!(report["deleted_sessions"], 5);
    assert_eq!(models(&server).await.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w1_two_callers_two_sessions() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let report = bench_ok(
        "w1",
        &[
            "--workload",
            "w1",
            "--total",
            "6",
            "--warmup",
            "0",
            "--concurrency",
            "2",
            "--address",
            &addr,
        ],
    )
    .await;
    assert_sane(&report["result"], 6);
    assert_eq!(
        (&report["sessions"], &report["deleted_sessions"]),
        (&2.into(), &2.into())
    );
    assert_eq!(report["w1"]["flop_per_step"], 246_960_000u64);
    assert!(report["w1"]["gflops_at_p50"].as_f64().unwrap() > 0.0);
    assert!(report.get("health").is_none());
    assert!(models(&server).await.is_empty());
}

/// W3 against this very process (the server runs in it), so `--server-pid` has a real
/// VmRSS to read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3_sessions_and_memory() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let pid = std::process::id().to_string();
    let report = bench_ok(
        "w3",
        &[
            "--workload",
            "w3",
            "--sessions",
            "200",
            "--concurrency",
            "4",
            "--server-pid",
            &pid,
            "--address",
            &addr,
        ],
    )
    .await;
    assert_sane(&report["result"], 200);
    assert_eq!(report["call"], "Trainer/CreateModel");
    let memory = &report["memory"];
    assert_eq!(memory["sessions"], 200);
    assert_eq!(memory["parameter_bytes_per_session"], 524);
    assert!(memory["rss_before_bytes"].as_u64().unwrap() > 0);
    assert!(memory["rss_after_bytes"].as_u64().unwrap() > 0);
    assert_eq!(report["deleted_sessions"], 200);
    assert!(models(&server).await.is_empty());
}

/// Failed calls are counted by code, reported, and make the exit code 1; the sessions
/// are still deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_calls_are_tallied_by_code() {
    let config = Config {
        request_limits: RequestLimits {
            max_batch_elements: 1000, // W2's 8×4 batch passes, W1's 200×3072 does not
            ..RequestLimits::default()
        },
        ..test_config()
    };
    let server = TestServer::with_config(config).await;
    let addr = server.addr.to_string();
    let run = bench(
        "w1-refused",
        &[
            "--workload",
            "w1",
            "--total",
            "3",
            "--warmup",
            "0",
            "--address",
            &addr,
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("3 of 3 calls failed"), "{}", run.stderr);
    let report = run.json.expect("a report even when calls fail");
    let result = &report["result"];
    assert_eq!((&result["requests"], &result["ok"]), (&3.into(), &0.into()));
    let errors = result["errors"].as_object().unwrap();
    assert_eq!(
        errors.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        3,
        "{errors:?}"
    );
    assert!(run.stdout.contains("errors: "), "{}", run.stdout);
    assert_eq!(report["deleted_sessions"], 1);
    assert!(models(&server).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors() {
    let run = bench("w3-total", &["--workload", "w3", "--total", "5"]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("--total and --duration do not apply"),
        "{}",
        run.stderr
    );
    let run = bench(
        "both",
        &["--workload", "health", "--total", "5", "--duration", "1"],
    )
    .await;
    assert_eq!(
        run.code, 2,
        "clap refuses --total with --duration: {}",
        run.stderr
    );
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let run = bench(
        "closed",
        &["--workload", "health", "--total", "5", "--address", &closed],
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("cannot connect"), "{}", run.stderr);
    assert!(run.json.is_none());
}
