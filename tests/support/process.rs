//! The real server binary, started by a test on 127.0.0.1:0, and the disk conditions only
//! a real file system gives: a tmpfs of a fixed size (to fill) that can be remounted
//! read-only. Mounting needs root; a test that cannot mount fails, it never skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use backprop::pb::trainer_client::TrainerClient;
use tonic::transport::Channel;

/// `backprop serve` on 127.0.0.1:0, killed if still running when dropped.
pub struct Binary {
    pub child: Child,
    pub client: TrainerClient<Channel>,
    /// Where it listens, `127.0.0.1:PORT`.
    pub addr: String,
}

impl Binary {
    /// Starts the server with `args` after `serve --listen 127.0.0.1:0`; `scratch` holds
    /// the address file and its stderr (`stderr.log`, overwritten at each start).
    pub async fn start(scratch: &Path, args: &[&str]) -> Self {
        Self::start_on(scratch, "127.0.0.1:0", args).await
    }

    /// As [`start`](Self::start), listening on `listen` (e.g. the port a killed server
    /// had, so a proxy in front finds it again).
    pub async fn start_on(scratch: &Path, listen: &str, args: &[&str]) -> Self {
        let address_file = scratch.join("address");
        let _ = std::fs::remove_file(&address_file);
        let log = std::fs::File::create(scratch.join("stderr.log")).expect("stderr log");
        let out = std::fs::File::create(scratch.join("stdout.log")).expect("stdout log");
        let child = Command::new(binary())
            .args(["serve", "--listen", listen, "--compute-threads", "2"])
            .arg("--address-file")
            .arg(&address_file)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(out)
            .stderr(log)
            .spawn()
            .expect("start backprop serve");
        let start = Instant::now();
        let addr = loop {
            if let Ok(a) = std::fs::read_to_string(&address_file)
                && !a.is_empty()
            {
                break a;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        Binary {
            child,
            client: TrainerClient::new(channel)
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            addr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of /proc/PID/status in KiB, e.g. `VmRSS`, `VmHWM`.
    pub fn status_kib(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/PID/status");
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`, `libc::SIGKILL`) to the server.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let r = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(r, 0, "kill({signal})");
    }

    /// Waits (bounded) for the process to exit and returns how it ended.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "server did not exit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns the exit code.
    pub async fn terminate(self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        self.wait().await.code()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The build's output directory (`target/`): the test binary runs from
/// `target/<profile>/deps/`. Read at run time, since cargo sets `CARGO_BIN_EXE_*` and
/// `CARGO_TARGET_TMPDIR` only for the test crates themselves, not for this library.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps/", exe.display()))
        .to_path_buf()
}

/// The `backprop` binary cargo built beside the test binary (`target/<profile>/`; it
/// builds it for every integration test).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let bin = exe
        .ancestors()
        .nth(2)
        .expect("target/<profile>/")
        .join(format!("backprop{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "no server binary at {}", bin.display());
    bin
}

/// A port on 127.0.0.1 that was free a moment ago (for a process that must be told its
/// port in advance: a proxy, a metrics listener, a server restarted behind a proxy).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Waits (bounded) until something accepts TCP connections on 127.0.0.1:`port`.
pub async fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not listen on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the last server started in `scratch` wrote to stdout: its log.
pub fn stdout(scratch: &Path) -> String {
    std::fs::read_to_string(scratch.join("stdout.log")).unwrap_or_default()
}

/// What the last server started in `scratch` wrote to stderr.
pub fn stderr(scratch: &Path) -> String {
    std::fs::read_to_string(scratch.join("stderr.log")).unwrap_or_default()
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = target_dir()
        .join("tmp")
        .join(format!("{name}-{}", std::process::id()));
    if dir.join("state").exists() {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(dir.join("state"))
            .status();
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A tmpfs of `bytes` mounted at `dir` (created), unmounted when dropped.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts it. Panics with what to do if it cannot: these tests need a real full or
    /// read-only disk, and a test that skipped would prove nothing.
    pub fn mount(dir: PathBuf, bytes: u64) -> Self {
        std::fs::create_dir_all(&dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} ({}): these tests need root (or CAP_SYS_ADMIN) to \
             make a full or read-only state directory",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir }
    }

    /// Remounts it read-only (`true`) or read-write.
    pub fn set_read_only(&self, read_only: bool) {
        let mode = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let out = Command::new("mount")
            .args(["-o", mode])
            .arg(&self.dir)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "mount -o {mode} {}: {}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// Fills it: writes a file of zeros until the disk is full.
    pub fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.filler()).expect("filler");
        let block = vec![0u8; 4096];
        loop {
            match f.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        let _ = f.sync_all();
    }

    /// Frees what [`fill`](Self::fill) took.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove the filler");
    }

    fn filler(&self) -> PathBuf {
        self.dir.join("filler")
    }

    /// The session files in it.
    pub fn session_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .expect("read dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".safetensors"))
            .collect();
        names.sort();
        names
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
