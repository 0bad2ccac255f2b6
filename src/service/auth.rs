//! Bearer-token authentication (`--auth-tokens FILE`): every call but health's must carry
//! `authorization: Bearer <token>`, and the token names the call's tenant.
//!
//! The file has one token a line: `TOKEN TENANT [max_sessions=N] [max_dataset_bytes=N]`,
//! fields separated by spaces or tabs; `#` starts a comment (so a token cannot contain
//! one), blank lines are skipped. A tenant may have several tokens (to rotate them); the
//! lines that give one of its limits must agree. `max_sessions` caps its live sessions,
//! `max_dataset_bytes` the bytes its datasets hold together (within the server's
//! `--max-dataset-memory`, which all tenants share).
//!
//! Tokens are kept only as SHA-256 digests and a presented token is compared, digest to
//! digest, in constant time against every one. No token is ever logged or shown in an
//! error message (a malformed file is reported by line number).
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::codegen::http;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::service::status::{Reason, Refusal};
use crate::session::Tenant;

/// Shorter tokens are refused: a token is a password that is guessed online.
pub const MIN_TOKEN_LEN: usize = 16;
const MAX_TENANT_LEN: usize = 64;

/// The tenant of a call, put there by [`Authenticate`]; the anonymous tenant when
/// authentication is off.
pub fn tenant<T>(req: &Request<T>) -> Tenant {
    req.extensions()
        .get::<Tenant>()
        .cloned()
        .unwrap_or_default()
}

/// The tokens a server accepts, each with its tenant. Cheap to clone.
#[derive(Clone)]
pub struct Tokens(Arc<[(TokenDigest, Tenant)]>);

type TokenDigest = [u8; 32];

fn digest(token: &[u8]) -> TokenDigest {
    Sha256::digest(token).into()
}

impl fmt::Debug for Tokens {
    /// Tenants only: a token must not reach a log through `{:?}` of the config.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tenants: Vec<&str> = self.0.iter().map(|(_, t)| t.name()).collect();
        tenants.dedup();
        f.debug_struct("Tokens")
            .field("count", &self.0.len())
            .field("tenants", &tenants)
            .finish()
    }
}

/// What is wrong with a tokens file, at `file:line`. Never contains a token.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct TokensFileError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl Tokens {
    /// Reads and checks a tokens file.
    pub fn load(path: &Path) -> Result<Self, TokensFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokensFileError {
            path: path.to_path_buf(),
            line: None,
            message: e.to_string(),
        })?;
        Self::parse(&text).map_err(|(line, message)| TokensFileError {
            path: path.to_path_buf(),
            line,
            message,
        })
    }

    /// Parses the file's text; an error carries its 1-based line number.
    pub fn parse(text: &str) -> Result<Self, (Option<usize>, String)> {
        struct Line<'a> {
            number: usize,
            token: &'a str,
            tenant: &'a str,
            max_sessions: Option<usize>,
            max_dataset_bytes: Option<u64>,
        }
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let number = i + 1;
            let fail = |m: String| (Some(number), m);
            let content = raw.split_once('#').map_or(raw, |(before, _)| before);
            let fields: Vec<&str> = content.split_whitespace().collect();
            let (token, tenant, options) = match fields[..] {
                [] => continue,
                [token, tenant, ref options @ ..] => (token, tenant, options),
                [_] => {
                    return Err(fail(
                        "expected `TOKEN TENANT [max_sessions=N] [max_dataset_bytes=N]`".into(),
                    ));
                }
            };
            if token.len() < MIN_TOKEN_LEN {
                return Err(fail(format!(
                    "the token is shorter than {MIN_TOKEN_LEN} characters; use a long random \
                     one, e.g. from `openssl rand -hex 32`"
                )));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(fail("the token must be printable ASCII".into()));
            }
            if tenant.len() > MAX_TENANT_LEN
                || !tenant
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(fail(format!(
                    "tenant {tenant:?}: use 1 to {MAX_TENANT_LEN} letters, digits, '-', '_' or '.'"
                )));
            }
            let (mut max_sessions, mut max_dataset_bytes) = (None, None);
            for option in options {
                let whole = |name: &str, n: &str| {
                    n.parse::<u64>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| fail(format!("{name}={n}: expected a whole number ≥ 1")))
                };
                match option.split_once('=') {
                    Some(("max_sessions", n)) => {
                        max_sessions = Some(whole("max_sessions", n)? as usize);
                    }
                    Some(("max_dataset_bytes", n)) => {
                        max_dataset_bytes = Some(whole("max_dataset_bytes", n)?);
                    }
                    _ => {
                        return Err(fail(format!(
                            "unknown option {option:?}; the options are max_sessions=N and \
                             max_dataset_bytes=N"
                        )));
                    }
                }
            }
            lines.push(Line {
                number,
                token,
                tenant,
                max_sessions,
                max_dataset_bytes,
            });
        }
        if lines.is_empty() {
            return Err((None, "no tokens: every call would be refused".into()));
        }
        // One value of each limit per tenant; one tenant per token.
        let mut sessions: HashMap<&str, (u64, usize)> = HashMap::new();
        let mut datasets: HashMap<&str, (u64, usize)> = HashMap::new();
        let mut seen: HashMap<TokenDigest, usize> = HashMap::new();
        for l in &lines {
            let given = [
                (
                    "max_sessions",
                    l.max_sessions.map(|n| n as u64),
                    &mut sessions,
                ),
                ("max_dataset_bytes", l.max_dataset_bytes, &mut datasets),
            ];
            for (name, value, agreed) in given {
                let Some(n) = value else { continue };
                if let Some(&(m, at)) = agreed.get(l.tenant)
                    && m != n
                {
                    return Err((
                        Some(l.number),
                        format!(
                            "tenant {}: {name}={n}, but line {at} says {name}={m}",
                            l.tenant
                        ),
                    ));
                }
                agreed.insert(l.tenant, (n, l.number));
            }
            if let Some(at) = seen.insert(digest(l.token.as_bytes()), l.number) {
                return Err((Some(l.number), format!("the same token as line {at}")));
            }
        }
        let entries = lines
            .iter()
            .map(|l| {
                let max_sessions = sessions.get(l.tenant).map(|&(n, _)| n as usize);
                let max_bytes = datasets.get(l.tenant).map(|&(n, _)| n);
                let tenant = Tenant::new(l.tenant, max_sessions).with_max_dataset_bytes(max_bytes);
                (digest(l.token.as_bytes()), tenant)
            })
            .collect();
        Ok(Tokens(entries))
    }

    /// The tenant whose token this is. Every stored digest is compared, in constant
    /// time, whatever matched before.
    pub fn tenant_of(&self, token: &str) -> Option<Tenant> {
        let presented = digest(token.as_bytes());
        let mut found = None;
        for (d, tenant) in self.0.iter() {
            if bool::from(d[..].ct_eq(&presented[..])) {
                found = Some(tenant.clone());
            }
        }
        found
    }
}

/// The interceptor in front of the Trainer (and reflection): with tokens, a call without
/// a known bearer token is UNAUTHENTICATED; either way the call's [`Tenant`] goes into
/// its extensions.
#[derive(Clone, Debug, Default)]
pub struct Authenticate(Option<Tokens>);

impl Authenticate {
    pub fn new(tokens: Option<Tokens>) -> Self {
        Authenticate(tokens)
    }
}

impl Authenticate {
    /// The caller's tenant from the `authorization` header: `Ok(None)` when
    /// authentication is off (the anonymous tenant), UNAUTHENTICATED without a known
    /// bearer token.
    fn tenant_from(&self, headers: &http::HeaderMap) -> Result<Option<Tenant>, Status> {
        let Some(tokens) = &self.0 else {
            return Ok(None);
        };
        let header = headers.get("authorization").and_then(|v| v.to_str().ok());
        let token = header.and_then(|h| {
            let (scheme, token) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let Some(token) = token else {
            tracing::debug!("refused a call without a bearer token");
            return Err(Refusal::new(
                Reason::Unauthenticated,
                "this server needs `authorization: Bearer <token>` metadata",
            )
            .into());
        };
        match tokens.tenant_of(token) {
            Some(tenant) => Ok(Some(tenant)),
            None => {
                tracing::debug!("refused a call with an unknown bearer token");
                Err(Refusal::new(Reason::Unauthenticated, "unknown bearer token").into())
            }
        }
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let tenant = self.tenant_from(req.metadata().as_ref())?;
        req.extensions_mut().insert(tenant.unwrap_or_default());
        Ok(req)
    }
}

/// [`Authenticate`] in front of a gRPC service, on the raw HTTP request: without tokens
/// it passes every call straight through (no conversion into a `tonic::Request` and back,
/// which cost W2 Forward ~10% of its rate); with tokens it refuses unknown callers with a
/// trailers-only UNAUTHENTICATED and puts the caller's [`Tenant`] into the extensions.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Authenticate,
}

impl<S> Authenticated<S> {
    pub fn new(inner: S, auth: Authenticate) -> Self {
        Authenticated { inner, auth }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for Authenticated<S>
where
    S: tonic::codegen::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match self.auth.tenant_from(req.headers()) {
            Ok(None) => Box::pin(self.inner.call(req)),
            Ok(Some(tenant)) => {
                req.extensions_mut().insert(tenant);
                Box::pin(self.inner.call(req))
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaa1";
    const A2: &str = "aaaaaaaaaaaaaaaa2";
    const B: &str = "bbbbbbbbbbbbbbbb1";

    #[test]
    fn parses_tokens_tenants_and_limits() {
        let text = format!(
            "# tokens\n\n{A} alice max_sessions=2 max_dataset_bytes=1000\n{A2}\talice  # rotated\n   {B} bob\n"
        );
        let t = Tokens::parse(&text).unwrap();
        let alice = t.tenant_of(A).unwrap();
        assert_eq!(alice.name(), "alice");
        assert_eq!(alice.max_sessions(), Some(2));
        assert_eq!(t.tenant_of(A2).unwrap().max_sessions(), Some(2));
        assert_eq!(alice.max_dataset_bytes(), Some(1000));
        assert_eq!(t.tenant_of(A2).unwrap().max_dataset_bytes(), Some(1000));
        assert_eq!(t.tenant_of(B).unwrap().max_dataset_bytes(), None);
        let bob = t.tenant_of(B).unwrap();
        assert_eq!((bob.name(), bob.max_sessions()), ("bob", None));
        assert_eq!(t.tenant_of("aaaaaaaaaaaaaaaa"), None);
        assert_eq!(t.tenant_of(""), None);
        let shown = format!("{t:?}");
        assert!(!shown.contains(A) && shown.contains("alice"), "{shown}");
    }

    #[test]
    fn malformed_files_name_the_line_and_never_the_token() {
        let cases = [
            (format!("{A}\n"), 1, "TOKEN TENANT"),
            ("\n\nshort alice\n".to_string(), 3, "shorter than 16"),
            (format!("{A} al/ice\n"), 1, "tenant"),
            (format!("{A} alice max=3\n"), 1, "unknown option"),
            (format!("{A} alice max_sessions=0\n"), 1, "max_sessions=0"),
            (
                format!("{A} alice max_dataset_bytes=x\n"),
                1,
                "max_dataset_bytes=x",
            ),
            (
                format!("{A} alice max_dataset_bytes=5\n{A2} alice max_dataset_bytes=6\n"),
                2,
                "line 1 says max_dataset_bytes=5",
            ),
            (format!("{A} alice\n{A} bob\n"), 2, "same token as line 1"),
            (
                format!("{A} alice max_sessions=1\n{A2} alice max_sessions=2\n"),
                2,
                "line 1 says max_sessions=1",
            ),
        ];
        for (text, line, needle) in cases {
            let (got_line, message) = Tokens::parse(&text).map(|_| ()).unwrap_err();
            assert_eq!(got_line, Some(line), "{text:?}: {message}");
            assert!(message.contains(needle), "{text:?}: {message}");
            assert!(!message.contains(A), "{message}");
        }
        let (line, message) = Tokens::parse("# nothing\n").map(|_| ()).unwrap_err();
        assert_eq!(line, None);
        assert!(message.contains("no tokens"));
    }

    #[test]
    fn interceptor_checks_the_bearer_token() {
        let tokens = Tokens::parse(&format!("{A} alice\n")).unwrap();
        let mut auth = Authenticate::new(Some(tokens));
        let with = |value: Option<&str>| {
            let mut req = Request::new(());
            if let Some(v) = value {
                req.metadata_mut()
                    .insert("authorization", v.parse().unwrap());
            }
            req
        };
        for bad in [
            None,
            Some("Bearer nope-nope-nope-nope"),
            Some(A),
            Some("Basic x"),
        ] {
            let err = auth.call(with(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
        for good in [format!("Bearer {A}"), format!("bearer  {A}")] {
            let req = auth.call(with(Some(&good))).unwrap();
            assert_eq!(tenant(&req).name(), "alice");
        }
        let req = Authenticate::new(None).call(with(None)).unwrap();
        assert_eq!(tenant(&req), Tenant::anonymous());
    }
}
