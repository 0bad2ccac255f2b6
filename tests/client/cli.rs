//! The `backprop` command line end to end: the real server runs in-process on
//! `127.0.0.1:0`, and each test runs the built binary against it the way a person (or
//! Docker's HEALTHCHECK) would, checking exit codes and what was printed.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use backprop::engine::rng::Rng;
use backprop::server::{self, Config};
use tokio::sync::oneshot;

/// A server on its own thread and runtime, so tests can block on child processes freely.
pub(crate) struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start() -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send");
                let shutdown = async move {
                    let _ = stopped.await;
                };
                server::run(listener, Config::default(), shutdown)
                    .await
                    .expect("server");
            });
        });
        let addr = addr_rx.recv().expect("server address");
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub(crate) fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

pub(crate) fn backprop(args: &[&str]) -> Run {
    backprop_env(args, &[])
}

fn backprop_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_backprop"))
        .args(args)
        .env_remove("BACKPROP_ADDRESS")
        .envs(env.iter().copied())
        .output()
        .expect("run the backprop binary");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "backprop {args:?} panicked:\n{}",
        run.stderr
    );
    run
}

/// A fresh folder for one test's files.
pub(crate) fn scratch(test: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Three well-separated Gaussian blobs in 4-D, 100 rows each, with a header row.
pub(crate) fn blobs_csv(path: &Path) {
    let centers = [
        [0.0, 0.0, 0.0, 0.0],
        [5.0, 5.0, 0.0, 0.0],
        [0.0, 5.0, 5.0, 0.0],
    ];
    let mut rng = Rng::new(11);
    let mut text = String::from("label,x1,x2,x3,x4\n");
    for i in 0..300 {
        let class = i % 3;
        let row: Vec<String> = centers[class]
            .iter()
            .map(|c| format!("{:.4}", c + rng.normal()))
            .collect();
        text.push_str(&format!("{class},{}\n", row.join(",")));
    }
    std::fs::write(path, text).expect("write csv");
}

/// An address where nothing listens: a port the OS just gave out and took back.
fn closed_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr.to_string()
}

#[test]
fn health_reports_serving() {
    let server = Server::start();
    let addr = server.address();
    let run = backprop(&["health", "--address", &addr]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "SERVING\n"),
        "{}",
        run.stderr
    );

    // The address also comes from the environment, with or without http://.
    let url = format!("http://{addr}");
    let run = backprop_env(&["health", "--service", ""], &[("BACKPROP_ADDRESS", &url)]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "SERVING\n"),
        "{}",
        run.stderr
    );

    let run = backprop(&["health", "--address", &addr, "--service", "no.such.Service"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("NOT_FOUND"), "{}", run.stderr);
}

#[test]
fn health_fails_against_a_closed_port() {
    let addr = closed_address();
    let run = backprop(&["health", "--address", &addr, "--timeout-secs", "2"]);
    // Exactly 1: Docker reads 1 as unhealthy and reserves 2.
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr
            .starts_with("backprop: cannot connect to http://")
            && run.stderr.contains("refused"),
        "{}",
        run.stderr
    );
}

#[test]
fn train_then_list_show_delete() {
    let server = Server::start();
    let addr = server.address();
    let dir = scratch("train");
    let data = dir.join("blobs.csv");
    blobs_csv(&data);
    let data_arg = data.to_str().expect("utf-8 path");

    let run = backprop(&[
        "train",
        "--data",
        data_arg,
        "--address",
        &addr,
        "--hidden",
        "16",
        "--epochs",
        "15",
        "--batch-size",
        "32",
        "--seed",
        "3",
        "--standardize",
    ]);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let out = &run.stdout;
    assert!(
        out.contains(
            "300 rows × 4 features, 3 classes, header: label,x1,x2,x3,x4; 240 train, 60 held out"
        ),
        "{out}"
    );
    // Not a terminal: periodic plain lines, no carriage returns.
    assert!(out.contains("epoch 15/15  step 120/120"), "{out}");
    assert!(!out.contains('\r'));
    assert!(out.contains("steps/s"));
    let accuracy: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("held-out accuracy "))
        .and_then(|l| l.split(',').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no held-out accuracy in:\n{out}"));
    assert!(accuracy >= 0.9, "held-out accuracy {accuracy}\n{out}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("model ")?.split(':').next())
        .expect("model id")
        .to_string();
    assert_eq!(id.len(), 32, "{out}");

    let svg = std::fs::read_to_string(dir.join("blobs.curve.svg")).expect("curve beside the data");
    assert!(svg.starts_with("<svg"));
    assert!(svg.contains("<polyline") || svg.contains("<path"));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);

    let run = backprop(&["models", "--address", &addr]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{}", run.stdout));
    assert!(row.contains("4 → 16 relu → 3"), "{row}");
    let wide = backprop(&["models", "--wide", "--address", &addr]);
    let row = wide
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{}", wide.stdout));
    assert!(row.contains("softmax") && row.contains("adam"), "{row}");

    let run = backprop(&["models", "--address", &format!("http://{addr}"), "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let listed: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let model = listed["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["model_id"] == id.as_str()))
        .expect("model in JSON");
    assert_eq!(model["step"], 120);
    assert_eq!(model["spec"]["num_classes"], 3);

    let run = backprop(&["show", &id, "--address", &addr]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for expected in [
        "layers.0.weight  4×16",
        "layers.0.bias",
        "layers.1.weight  16×3",
        "layers.1.bias",
        "step       120",
    ] {
        assert!(
            run.stdout.contains(expected),
            "{expected:?} missing:\n{}",
            run.stdout
        );
    }

    let run = backprop(&["show", &id, "--values", "--json", "--address", &addr]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let shown: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let params = shown["parameters"].as_array().expect("parameters");
    assert_eq!(params.len(), 4);
    for p in params {
        let size: u64 = p["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .filter_map(|d| d.as_u64())
            .product();
        assert_eq!(
            p["values"].as_array().expect("values").len() as u64,
            size,
            "{p}"
        );
    }

    // export → import: a second session with the same values and step.
    let file = dir.join("model.safetensors");
    let file_arg = file.to_str().expect("utf-8 path");
    let run = backprop(&["export", &id, file_arg, "--address", &addr]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with(&format!("exported {id} to {file_arg} (")),
        "{}",
        run.stdout
    );
    let run = backprop(&["import", file_arg, "--json", "--address", &addr]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let imported: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(imported["step"], 120);
    let copy = imported["model_id"].as_str().expect("id").to_string();
    assert_ne!(copy, id);
    let run = backprop(&["show", &copy, "--values", "--json", "--address", &addr]);
    let copied: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(copied["parameters"], shown["parameters"], "same values");
    // A damaged file is refused by the server, with the reason.
    let mut bytes = std::fs::read(&file).expect("exported file");
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&file, &bytes).expect("write");
    let run = backprop(&["import", file_arg, "--address", &addr]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(
            "backprop: ImportModel failed: INVALID_ARGUMENT: checkpoint: not a safetensors file"
        ),
        "{}",
        run.stderr
    );

    let run = backprop(&["delete", &id, "--address", &addr]);
    assert_eq!(
        (run.code, run.stdout.trim()),
        (0, format!("deleted {id}").as_str()),
        "{}",
        run.stderr
    );
    let run = backprop(&["models", "--address", &addr]);
    assert!(!run.stdout.contains(&id), "{}", run.stdout);
    let run = backprop(&["show", &id, "--address", &addr]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with("backprop: GetModel failed: NOT_FOUND: "),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_files_name_line_and_column() {
    let dir = scratch("bad");
    // No server: a bad file is reported before any connection is tried.
    let addr = closed_address();
    let cases = [
        (
            "word.csv",
            "label,a,b,c\n0,1,2,3\n1,1,2,abc\n",
            ":3:4: \"abc\" is not a number",
        ),
        (
            "ragged.csv",
            "0,1,2\n1,2,3\n\n0,4\n",
            ":4:3: too few columns: found 2, expected 3",
        ),
        (
            "label.csv",
            "0,1.5\n2.5,1\n",
            ":2:1: label \"2.5\" is not an integer",
        ),
        (
            "negative.csv",
            "y,x\n-1,1\n",
            ":2:1: label \"-1\" is negative",
        ),
        ("empty.csv", "", ": empty file"),
        ("header.csv", "label,x\n", ":1: only a header row"),
    ];
    for (name, text, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        let shown = path.to_str().expect("utf-8 path");
        let run = backprop(&["train", "--data", shown, "--address", &addr]);
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        let expected = format!("{shown}{expected}");
        assert!(
            run.stderr.starts_with(&expected),
            "{name}: want {expected:?}, got {:?}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"));
    }
    let run = backprop(&[
        "train",
        "--data",
        &dir.join("missing.csv").display().to_string(),
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with("backprop: cannot read "),
        "{}",
        run.stderr
    );
}

#[test]
fn server_rejections_show_code_and_message() {
    let server = Server::start();
    let addr = server.address();
    let dir = scratch("rejected");
    let data = dir.join("blobs.csv");
    blobs_csv(&data);
    // 16M hidden units make ~128M parameters, past the server's 50M limit.
    let run = backprop(&[
        "train",
        "--data",
        data.to_str().expect("utf-8 path"),
        "--address",
        &addr,
        "--hidden",
        "16000000",
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr
            .starts_with("backprop: CreateModel failed: RESOURCE_EXHAUSTED: "),
        "{}",
        run.stderr
    );
    let run = backprop(&["models", "--address", "https://127.0.0.1:1"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("needs --tls-ca"), "{}", run.stderr);
    let run = backprop(&["models", "--address", "ftp://127.0.0.1:1"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("not supported"), "{}", run.stderr);
}

/// Named classes (`setosa`, …) whose features differ in scale by a factor of 10⁶, in
/// `rows` rows with a header; the label in column `label_at` (0-based) unless `None`.
fn named_csv(path: &Path, rows: usize, seed: u64, label_at: Option<usize>) -> Vec<&'static str> {
    let names = ["setosa", "versicolor", "virginica"];
    let centers = [[1000.0, 0.001], [3000.0, 0.003], [2000.0, 0.005]];
    let spread = [300.0, 0.0003];
    let mut rng = Rng::new(seed);
    let mut text = match label_at {
        Some(0) => "species,mass,length\n".to_string(),
        _ => "mass,length\n".to_string(),
    };
    let mut labels = Vec::new();
    for i in 0..rows {
        let c = (i * 7 + 3) % 3;
        let x: Vec<String> = (0..2)
            .map(|j| format!("{:.6}", centers[c][j] + spread[j] * rng.normal()))
            .collect();
        let line = match label_at {
            Some(_) => format!("{},{}", names[c], x.join(",")),
            None => x.join(","),
        };
        text.push_str(&line);
        text.push('\n');
        labels.push(names[c]);
    }
    std::fs::write(path, text).expect("write csv");
    labels
}

/// Train on string labels with `--standardize`: the model keeps the class names (sorted)
/// and the training rows' statistics, so `predict` on raw, unlabelled rows answers class
/// names that match the truth, `--proba` rows sum to 1, `eval` on a labelled file reports
/// the accuracy, `show` says both, and `predict | head -2` ends quietly.
#[test]
fn string_labels_and_standardization_are_kept_for_predict_and_eval() {
    let server = Server::start();
    let addr = server.address();
    let dir = scratch("named");
    let (train, test, rows) = (
        dir.join("train.csv"),
        dir.join("test.csv"),
        dir.join("rows.csv"),
    );
    named_csv(&train, 300, 1, Some(0));
    named_csv(&test, 90, 2, Some(0));
    let truth = named_csv(&rows, 90, 2, None);
    let p = |p: &Path| p.to_str().expect("utf-8").to_string();
    let run = backprop(&[
        "train",
        "--data",
        &p(&train),
        "--address",
        &addr,
        "--hidden",
        "16",
        "--epochs",
        "20",
        "--loss",
        "softmax",
        "--seed",
        "4",
        "--standardize",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("classes (kept in the model): setosa=0, versicolor=1, virginica=2"),
        "{}",
        run.stdout
    );
    let id = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("model ")?.split(':').next())
        .expect("model id")
        .to_string();

    let show = backprop(&["show", &id, "--address", &addr]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(
        show.stdout
            .contains("classes    setosa, versicolor, virginica"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("input      standardized by the model"),
        "{}",
        show.stdout
    );

    let predicted = backprop(&["predict", &id, "--data", &p(&rows), "--address", &addr]);
    assert_eq!(predicted.code, 0, "{}", predicted.stderr);
    let lines: Vec<&str> = predicted.stdout.lines().collect();
    assert_eq!(lines[0], "prediction");
    assert_eq!(lines.len(), 91);
    let right = lines[1..]
        .iter()
        .zip(&truth)
        .filter(|(p, t)| p == t)
        .count();
    assert!(
        right >= 85,
        "{right} of 90 predictions right:\n{}",
        predicted.stdout
    );

    let proba = backprop(&[
        "predict",
        &id,
        "--data",
        &p(&rows),
        "--address",
        &addr,
        "--proba",
    ]);
    assert_eq!(proba.code, 0, "{}", proba.stderr);
    let mut lines = proba.stdout.lines();
    assert_eq!(
        lines.next(),
        Some("prediction,p(setosa),p(versicolor),p(virginica)")
    );
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let ps: Vec<f64> = cells[1..].iter().map(|c| c.parse().unwrap()).collect();
        assert!((ps.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{line}");
        let best = (0..3).max_by(|&a, &b| ps[a].total_cmp(&ps[b])).unwrap();
        assert_eq!(
            cells[0],
            ["setosa", "versicolor", "virginica"][best],
            "{line}"
        );
    }

    let eval = backprop(&[
        "eval",
        &id,
        "--data",
        &p(&test),
        "--address",
        &addr,
        "--json",
    ]);
    assert_eq!(eval.code, 0, "{}", eval.stderr);
    let v: serde_json::Value = serde_json::from_str(eval.stdout.trim()).expect("JSON");
    assert_eq!(v["rows"], 90);
    let accuracy = v["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.94, "{v}");
    assert_eq!(
        v["correct"].as_u64().unwrap(),
        (accuracy * 90.0).round() as u64
    );

    // A label the model does not know is named with its line.
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "species,mass,length\nsetosa,1000,0.001\nrose,2000,0.002\n",
    )
    .unwrap();
    let e = backprop(&["eval", &id, "--data", &p(&bad), "--address", &addr]);
    assert_eq!(e.code, 1);
    assert!(
        e.stderr.contains(
            ":3:1: label \"rose\" is none of the model's classes (setosa, versicolor, virginica)"
        ),
        "{}",
        e.stderr
    );

    // The reader closes the pipe at once: no panic, no message; the command ends as any
    // command-line tool does (SIGPIPE) or with 0.
    let mut child = Command::new(env!("CARGO_BIN_EXE_backprop"))
        .args(["predict", &id, "--data", &p(&rows), "--address", &addr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("predict");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("predict ends");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.code() == Some(0) || out.status.signal() == Some(libc::SIGPIPE),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every listing command too.
    for args in [vec!["models"], vec!["datasets"], vec!["show", id.as_str()]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_backprop"))
            .args(&args)
            .args(["--address", &addr])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("ends");
        assert!(
            out.status.code() == Some(0) || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?}",
            out.status
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Data that looks like a mistake is warned about before training (a class per row from a
/// pandas index column, classes with no row, feature scales 10⁶ apart); `train --rm`
/// leaves nothing behind; `delete` takes id prefixes and several ids, and `--all` asks
/// first (refusing without a terminal unless --yes).
#[test]
fn warnings_rm_and_deleting_by_prefix_or_all() {
    let server = Server::start();
    let addr = server.address();
    let dir = scratch("warnings");
    let p = |p: &Path| p.to_str().expect("utf-8").to_string();
    let train = |file: &Path, extra: &[&str]| {
        let mut args = vec!["train", "--data", &p(file)]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        args.extend(["--address", &addr, "--epochs", "1", "--hidden", "4"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        backprop(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // pandas' to_csv(): the index first, so label column 1 is a class per row.
    let indexed = dir.join("indexed.csv");
    let mut text = String::from(",label,x\n");
    for i in 0..20 {
        text.push_str(&format!("{i},{},{}\n", i % 2, i as f64 * 0.5));
    }
    std::fs::write(&indexed, text).unwrap();
    let run = train(&indexed, &["--rm"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("warning: 20 classes for 20 rows"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("deleted (--rm)"), "{}", run.stdout);
    let listed = backprop(&["models", "--json", "--address", &addr]);
    assert_eq!(
        listed.stdout.trim(),
        r#"{"models":[]}"#,
        "--rm left a model"
    );
    // Dropping the index column and naming the label column: no warning, two classes.
    let run = train(&indexed, &["--rm", "--label-column", "2", "--drop", "1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    assert!(
        run.stdout.contains("20 rows × 1 features, 2 classes"),
        "{}",
        run.stdout
    );

    // Labels 1..=2: class 0 has no row.
    let shifted = dir.join("shifted.csv");
    let text: String = (0..20)
        .map(|i| format!("{},{}\n", 1 + i % 2, i as f64))
        .collect();
    std::fs::write(&shifted, text).unwrap();
    let run = train(&shifted, &["--rm"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("warning: no row has class 0"),
        "{}",
        run.stderr
    );

    // Scales 10⁶ apart without --standardize, then with it: warned once.
    let scales = dir.join("scales.csv");
    named_csv(&scales, 60, 5, Some(0));
    let run = train(&scales, &[]);
    assert!(
        run.stderr.contains("consider --standardize"),
        "{}",
        run.stderr
    );
    let first = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("model ")?.split(':').next())
        .expect("model id")
        .to_string();
    let run = train(&scales, &["--standardize"]);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    let second = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("model ")?.split(':').next())
        .expect("model id")
        .to_string();

    // A prefix that names one model; one that names none.
    let show = backprop(&["show", &first[..10], "--address", &addr]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.contains(&first), "{}", show.stdout);
    let none = backprop(&["show", "fffffffffffz", "--address", &addr]);
    assert_eq!(none.code, 1);
    assert!(
        none.stderr
            .contains("no model is named \"fffffffffffz\" or has an id that starts with it"),
        "{}",
        none.stderr
    );
    // --all asks first: without a terminal it refuses and deletes nothing.
    let refused = backprop(&["delete", "--all", "--address", &addr]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("add --yes"), "{}", refused.stderr);
    let gone = backprop(&["delete", &first[..10], "--address", &addr]);
    assert_eq!(gone.code, 0, "{}", gone.stderr);
    assert_eq!(gone.stdout.trim(), format!("deleted {first}"));
    let all = backprop(&["delete", "--all", "--yes", "--json", "--address", &addr]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    let v: serde_json::Value = serde_json::from_str(all.stdout.trim()).unwrap();
    assert_eq!(v["deleted"], serde_json::json!([second]));
    let listed = backprop(&["models", "--json", "--address", &addr]);
    assert_eq!(listed.stdout.trim(), r#"{"models":[]}"#);
}

/// `train --model ID` continues a model: its class names read the file's labels, its
/// stored standardization applies (no scale warning), and its step moves on.
#[test]
fn train_continues_a_model() {
    let server = Server::start();
    let addr = server.address();
    let dir = scratch("continue");
    let data = dir.join("named.csv");
    named_csv(&data, 120, 7, Some(0));
    let d = data.to_str().unwrap();
    let first = backprop(&[
        "train",
        "--data",
        d,
        "--address",
        &addr,
        "--epochs",
        "2",
        "--standardize",
        "--loss",
        "softmax",
    ]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let id = first
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("model ")?.split(':').next())
        .expect("model id")
        .to_string();
    let step = |addr: &str| {
        let show = backprop(&["show", &id, "--address", addr, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&show.stdout).expect("JSON");
        v["step"].as_u64().expect("step")
    };
    let before = step(&addr);
    let again = backprop(&[
        "train",
        "--data",
        d,
        "--address",
        &addr,
        "--epochs",
        "3",
        "--model",
        &id[..12],
    ]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(
        again
            .stdout
            .contains(&format!("continuing model {id} from step {before}")),
        "{}",
        again.stdout
    );
    assert!(
        !again.stderr.contains("consider --standardize"),
        "{}",
        again.stderr
    );
    assert!(step(&addr) > before);
    let listed = backprop(&["models", "--json", "--address", &addr]);
    let v: serde_json::Value = serde_json::from_str(listed.stdout.trim()).unwrap();
    assert_eq!(v["models"].as_array().unwrap().len(), 1, "no second model");
    // A file of another width is refused before anything is uploaded.
    let narrow = dir.join("narrow.csv");
    std::fs::write(&narrow, "species,mass\nsetosa,1\nvirginica,2\n").unwrap();
    let e = backprop(&[
        "train",
        "--data",
        narrow.to_str().unwrap(),
        "--address",
        &addr,
        "--model",
        &id,
    ]);
    assert_eq!(e.code, 1);
    assert!(
        e.stderr.contains("1 feature columns, but model"),
        "{}",
        e.stderr
    );
}
