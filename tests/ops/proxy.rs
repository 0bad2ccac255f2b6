//! The reference proxies of deploy/ (nginx and HAProxy, Debian's packages) started in
//! front of replicas on 127.0.0.1, each on a free port, stopped when dropped. The
//! configurations are the shipped files, with only the addresses (and, for nginx, the
//! process's own paths) rewritten for loopback, so the tests check what users deploy.
//! A missing nginx or haproxy fails the test: the test command installs both.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::process::{free_port, wait_for_port};

/// The example addresses of the shipped files, replica by replica.
const SHIPPED: [&str; 3] = ["10.0.0.10:50051", "10.0.0.11:50051", "10.0.0.12:50051"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Haproxy,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Nginx, Kind::Haproxy];
}

/// A proxy process and the port clients call it on.
pub struct Proxy {
    child: Child,
    pub kind: Kind,
    pub port: u16,
    dir: PathBuf,
}

fn deploy(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// `text` with the shipped example addresses replaced by the replicas' (in order).
fn readdress(text: &str, replicas: &[String]) -> String {
    assert_eq!(
        replicas.len(),
        SHIPPED.len(),
        "the shipped files name three replicas"
    );
    let mut text = text.to_string();
    for (shipped, addr) in SHIPPED.iter().zip(replicas) {
        assert!(
            text.contains(shipped),
            "{shipped} is not in the shipped file"
        );
        text = text.replace(shipped, addr);
    }
    text
}

fn program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: tests/run_all.sh installs it (Debian package)");
}

impl Proxy {
    /// Starts `kind` in front of `replicas` (`127.0.0.1:PORT` of backprop-0, -1, -2).
    pub async fn start(kind: Kind, scratch: &Path, replicas: &[String]) -> Self {
        let port = free_port();
        let dir = scratch.join(format!("{kind:?}").to_lowercase());
        std::fs::create_dir_all(dir.join("tmp")).expect("proxy dir");
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect(name);
        let log = std::fs::File::create(dir.join("stderr.log")).expect("proxy log");
        let mut command = match kind {
            Kind::Nginx => {
                for f in [
                    "backprop-routing.conf",
                    "backprop-server.conf",
                    "backprop-replicas.map",
                ] {
                    write(f, &deploy(&format!("nginx/{f}")));
                }
                write(
                    "backprop-upstreams.conf",
                    &readdress(&deploy("nginx/backprop-upstreams.conf"), replicas),
                );
                // The shipped nginx.conf's http block, with this process's own paths; one
                // process (no master and workers), so that killing it leaves nothing behind.
                let d = dir.display();
                write(
                    "nginx.conf",
                    &format!(
                        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
                         error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
                         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n\
                         proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n\
                         uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
                         include backprop-routing.conf;\n  server {{\n    \
                         listen 127.0.0.1:{port} http2;\n    include backprop-server.conf;\n  }}\n}}\n"
                    ),
                );
                let mut c = Command::new(program("nginx"));
                c.arg("-p").arg(&dir).arg("-c").arg(dir.join("nginx.conf"));
                c
            }
            Kind::Haproxy => {
                write(
                    "backprop-unavailable.http",
                    &deploy("haproxy/backprop-unavailable.http"),
                );
                let shipped = deploy("haproxy/haproxy.cfg");
                assert!(shipped.contains("bind :8080 proto h2"));
                let cfg = readdress(&shipped, replicas)
                    .replace(
                        "bind :8080 proto h2",
                        &format!("bind 127.0.0.1:{port} proto h2"),
                    )
                    .replace(
                        "/etc/haproxy/errors/backprop-unavailable.http",
                        &dir.join("backprop-unavailable.http").display().to_string(),
                    );
                write("haproxy.cfg", &cfg);
                let mut c = Command::new(program("haproxy"));
                // -db: stay in the foreground (stopped with the test).
                c.arg("-db").arg("-f").arg(dir.join("haproxy.cfg"));
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {kind:?}: {e}"));
        let mut proxy = Proxy {
            child,
            kind,
            port,
            dir,
        };
        wait_for_port(port, &format!("{kind:?}")).await;
        if let Some(status) = proxy.child.try_wait().expect("wait") {
            panic!("{kind:?} exited ({status}): {}", proxy.log());
        }
        proxy
    }

    /// What the proxy wrote to stderr (and nginx to its error log).
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
