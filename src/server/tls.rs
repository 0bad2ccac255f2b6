//! TLS for the gRPC port (`--tls-cert`, `--tls-key`, and `--tls-client-ca` for mutual
//! TLS), served by rustls through tonic. Files are read and checked at startup, so a bad
//! one stops the server with its path in the message, before anything listens.
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {}: {message}", path.display())]
pub struct TlsFileError {
    pub flag: &'static str,
    pub path: PathBuf,
    pub message: String,
}

/// The server's certificate chain and private key (PEM), and, for mutual TLS, the CA
/// (PEM) that client certificates must chain to: with it, a client without a
/// certificate signed by that CA is refused during the handshake.
pub fn load(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerTlsConfig, TlsFileError> {
    let cert_pem = read_pem("--tls-cert", cert, "CERTIFICATE")?;
    let key_pem = read_pem("--tls-key", key, "PRIVATE KEY")?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
    if let Some(ca) = client_ca {
        let ca_pem = read_pem("--tls-client-ca", ca, "CERTIFICATE")?;
        config = config.client_ca_root(Certificate::from_pem(ca_pem));
    }
    // Building the acceptor parses every file; do it now, naming the flags.
    Server::builder()
        .tls_config(config.clone())
        .map_err(|e| TlsFileError {
            flag: "--tls-cert/--tls-key",
            path: cert.to_path_buf(),
            message: causes(&e),
        })?;
    Ok(config)
}

/// The builder `run` serves with: TLS when configured (a client must finish the TLS
/// handshake within `handshake_timeout`), plaintext otherwise.
pub(super) fn builder(
    tls: Option<&ServerTlsConfig>,
    handshake_timeout: std::time::Duration,
) -> Result<Server, tonic::transport::Error> {
    match tls {
        Some(tls) => Server::builder().tls_config(tls.clone().timeout(handshake_timeout)),
        None => Ok(Server::builder()),
    }
}

/// The file's text if it holds a PEM block whose label contains `label` (so `PRIVATE
/// KEY` also accepts `RSA PRIVATE KEY` and `EC PRIVATE KEY`).
fn read_pem(flag: &'static str, path: &Path, label: &str) -> Result<String, TlsFileError> {
    let fail = |message: String| TlsFileError {
        flag,
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let has_block = text.lines().any(|l| {
        l.strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
            .is_some_and(|l| l.contains(label))
    });
    if !has_block {
        return Err(fail(format!("no PEM \"{label}\" block")));
    }
    Ok(text)
}

/// An error and its sources, one after another: tonic's own message is often just
/// "transport error".
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
