//! Reaching the server: the flags every client subcommand shares (`--address`, `--token`,
//! `--tls-ca`, `--tls-cert`, `--tls-key`) and one connection per command, which sends the
//! bearer token with every call.
use std::path::PathBuf;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::error::{CliError, causes};
use crate::pb::trainer_client::TrainerClient;

/// The port assumed when an address names none (the server's default).
const DEFAULT_PORT: u16 = 50051;

#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Server address: host:port, http://host:port, or https://host:port (TLS; implied by
    /// --tls-ca).
    #[arg(
        long,
        env = "BACKPROP_ADDRESS",
        default_value = "127.0.0.1:50051",
        value_name = "ADDRESS"
    )]
    pub address: String,
    /// Bearer token sent with every call, for a server run with --auth-tokens.
    #[arg(
        long,
        env = "BACKPROP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<Token>,
    /// Connect with TLS, trusting this CA (PEM) to have signed the server's certificate.
    #[arg(long, env = "BACKPROP_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a server that requires mutual TLS; needs --tls-key.
    #[arg(
        long,
        env = "BACKPROP_CLIENT_TLS_CERT",
        value_name = "FILE",
        requires_all = ["tls_key", "tls_ca"]
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(
        long,
        env = "BACKPROP_CLIENT_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

/// A bearer token; `Debug` does not show it.
#[derive(Clone)]
pub struct Token(String);

impl std::str::FromStr for Token {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Token(s.to_string()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// `host:port`, `http://host[:port]` or `https://host[:port]` as the URI tonic wants;
/// `tls` says whether TLS options were given (a bare host:port then means https).
pub fn endpoint_uri(address: &str, tls: bool) -> Result<http::Uri, CliError> {
    let address = address.trim();
    let bad = |why: &str| CliError::Usage(format!("bad --address {address:?}: {why}"));
    let scheme = if tls { "https" } else { "http" };
    let with_scheme = match address.split_once("://") {
        Some(("http", _)) if tls => {
            return Err(bad(
                "http:// is plaintext but --tls-ca was given; use https:// or host:port",
            ));
        }
        Some(("https", _)) if !tls => {
            return Err(bad(
                "https:// needs --tls-ca FILE, the CA that signed the server's certificate",
            ));
        }
        Some(("http" | "https", _)) => address.to_string(),
        Some((scheme, _)) => {
            return Err(bad(&format!(
                "scheme {scheme}:// is not supported; use host:port, http://host:port or https://host:port"
            )));
        }
        None => format!("{scheme}://{address}"),
    };
    let uri: http::Uri = with_scheme
        .parse()
        .map_err(|e| bad(&format!("{e}; expected host:port or http://host:port")))?;
    let Some(authority) = uri.authority() else {
        return Err(bad("no host; expected host:port or http://host:port"));
    };
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(bad("a path is not allowed; expected host:port"));
    }
    // What follows the host's last ':' (after "]" for an IPv6 literal) must be a port,
    // 1 to 65535: `:9999x`, `:abc` or `:99999` are mistakes, not "use the default".
    let text = authority.as_str();
    let after_host = match text.rfind(']') {
        Some(end) => &text[end + 1..],
        None => text.rfind(':').map_or("", |i| &text[i..]),
    };
    if let Some(port) = after_host.strip_prefix(':') {
        return match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(uri),
            _ => Err(bad(&format!(
                "{port:?} is not a port (1 to 65535); expected host:port"
            ))),
        };
    }
    if !after_host.is_empty() {
        return Err(bad("expected host:port"));
    }
    format!("{scheme}://{}:{DEFAULT_PORT}", authority.host())
        .parse()
        .map_err(|e| bad(&format!("{e}")))
}

/// The TLS settings the flags ask for, with the files read; `None` for plaintext.
fn tls_config(server: &ServerArgs) -> Result<Option<ClientTlsConfig>, CliError> {
    let Some(ca) = &server.tls_ca else {
        return Ok(None);
    };
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| CliError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    if let (Some(cert), Some(key)) = (&server.tls_cert, &server.tls_key) {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(config))
}

/// Opens a connection, giving up after `timeout` (the TCP connect, the TLS and HTTP/2
/// handshakes together).
pub async fn connect(server: &ServerArgs, timeout: Duration) -> Result<Connection, CliError> {
    let tls = tls_config(server)?;
    let uri = endpoint_uri(&server.address, tls.is_some())?;
    let shown = uri.to_string().trim_end_matches('/').to_string();
    let fail = |detail: String| CliError::Connect {
        address: shown.clone(),
        detail,
    };
    let authorization = match &server.token {
        Some(Token(token)) => {
            let mut value = http::HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| CliError::Usage("--token: only printable ASCII is allowed".into()))?;
            value.set_sensitive(true); // never in HPACK tables, never in Debug output
            Some(value)
        }
        None => None,
    };
    let mut endpoint = Endpoint::from(uri)
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| fail(causes(&e)))?;
    }
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(Connection {
            channel,
            authorization,
        }),
        Ok(Err(e)) => Err(fail(causes(&e))),
        Err(_) => Err(fail(format!("timed out after {timeout:?}"))),
    }
}

/// A connected channel that adds `authorization: Bearer <token>` to every call when a
/// token was given (and costs nothing more than the channel when not).
#[derive(Clone, Debug)]
pub struct Connection {
    channel: Channel,
    authorization: Option<http::HeaderValue>,
}

impl Service<http::Request<Body>> for Connection {
    type Response = <Channel as Service<http::Request<Body>>>::Response;
    type Error = <Channel as Service<http::Request<Body>>>::Error;
    type Future = <Channel as Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(&mut self.channel, cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if let Some(value) = &self.authorization {
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, value.clone());
        }
        self.channel.call(req)
    }
}

/// A Trainer client with no message-size limit of its own: the server's limits apply.
pub fn trainer(channel: Connection) -> TrainerClient<Connection> {
    TrainerClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// Connect timeout for the subcommands other than `health` (which has its own flag).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let ok = |a: &str| endpoint_uri(a, false).map(|u| u.to_string());
        assert_eq!(ok("127.0.0.1:50051").unwrap(), "http://127.0.0.1:50051/");
        assert_eq!(ok("http://host:9").unwrap(), "http://host:9/");
        assert_eq!(ok("localhost").unwrap(), "http://localhost:50051/");
        assert_eq!(ok("[::1]:7").unwrap(), "http://[::1]:7/");
        assert!(ok("https://host:1").is_err());
        assert!(ok("ftp://host:1").is_err());
        assert!(ok("host:1/x").is_err());
        assert!(ok("").is_err());
        // A port that is not one is refused, never replaced by the default.
        for bad in [
            "127.0.0.1:9999x",
            "127.0.0.1:abc",
            "127.0.0.1:99999",
            "127.0.0.1:0",
            "127.0.0.1:",
            "[::1]:x",
            "http://host:65536",
        ] {
            let e = ok(bad).expect_err(bad).to_string();
            assert!(e.contains("bad --address"), "{bad}: {e}");
        }
        assert_eq!(ok("127.0.0.1:65535").unwrap(), "http://127.0.0.1:65535/");
        assert_eq!(ok("[::1]").unwrap(), "http://[::1]:50051/");
        let tls = |a: &str| endpoint_uri(a, true).map(|u| u.to_string());
        assert_eq!(tls("host:9").unwrap(), "https://host:9/");
        assert_eq!(tls("https://host").unwrap(), "https://host:50051/");
        assert!(tls("http://host:9").is_err());
    }

    #[test]
    fn a_token_does_not_show_in_debug_output() {
        let t: Token = "s3cret-s3cret-s3cret".parse().unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
