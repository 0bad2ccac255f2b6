//! Reaching the server: the `--address` flag every client subcommand shares, and one
//! connected channel per command.
use std::time::Duration;

use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

use super::error::{CliError, causes};
use crate::pb::trainer_client::TrainerClient;

/// The port assumed when an address names none (the server's default).
const DEFAULT_PORT: u16 = 50051;

#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Server address: host:port or http://host:port.
    #[arg(
        long,
        env = "BACKPROP_ADDRESS",
        default_value = "127.0.0.1:50051",
        value_name = "ADDRESS"
    )]
    pub address: String,
}

/// `host:port` or `http://host[:port]` as the URI tonic wants. No TLS: the server speaks
/// plaintext HTTP/2 (put a proxy in front for TLS).
pub fn endpoint_uri(address: &str) -> Result<Uri, CliError> {
    let address = address.trim();
    let bad = |why: &str| CliError::Usage(format!("bad --address {address:?}: {why}"));
    let with_scheme = match address.split_once("://") {
        Some(("http", _)) => address.to_string(),
        Some((scheme, _)) => {
            return Err(bad(&format!(
                "scheme {scheme}:// is not supported; the server speaks plaintext gRPC, use host:port or http://host:port"
            )));
        }
        None => format!("http://{address}"),
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|e| bad(&format!("{e}; expected host:port or http://host:port")))?;
    let Some(authority) = uri.authority() else {
        return Err(bad("no host; expected host:port or http://host:port"));
    };
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(bad("a path is not allowed; expected host:port"));
    }
    if authority.port().is_some() {
        return Ok(uri);
    }
    format!("http://{}:{DEFAULT_PORT}", authority.host())
        .parse()
        .map_err(|e| bad(&format!("{e}")))
}

/// Opens a connection, giving up after `timeout` (the TCP connect and the HTTP/2
/// handshake together).
pub async fn connect(address: &str, timeout: Duration) -> Result<Channel, CliError> {
    let uri = endpoint_uri(address)?;
    let shown = uri.to_string().trim_end_matches('/').to_string();
    let endpoint = Endpoint::from(uri)
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    let fail = |detail: String| CliError::Connect {
        address: shown.clone(),
        detail,
    };
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(fail(causes(&e))),
        Err(_) => Err(fail(format!("timed out after {timeout:?}"))),
    }
}

/// A Trainer client with no message-size limit of its own: the server's limits apply.
pub fn trainer(channel: Channel) -> TrainerClient<Channel> {
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
        let ok = |a: &str| endpoint_uri(a).map(|u| u.to_string());
        assert_eq!(ok("127.0.0.1:50051").unwrap(), "http://127.0.0.1:50051/");
        assert_eq!(ok("http://host:9").unwrap(), "http://host:9/");
        assert_eq!(ok("localhost").unwrap(), "http://localhost:50051/");
        assert_eq!(ok("[::1]:7").unwrap(), "http://[::1]:7/");
        assert!(ok("https://host:1").is_err());
        assert!(ok("host:1/x").is_err());
        assert!(ok("").is_err());
    }
}
