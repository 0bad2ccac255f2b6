//! The server's side of [`crate::metrics`]: a tower layer that counts and times every
//! Trainer call by method and gRPC status, and the `/metrics` HTTP endpoint on its own
//! listener.
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

use crate::metrics::{Gauges, Metrics};
use crate::pb;
use crate::service::reason::code_name;

/// Counts and times each call of the wrapped service. The status is in the response
/// headers for a trailers-only answer (every error the handlers, the interceptor or the
/// codec return) and in the trailers otherwise, so both are read; the call ends, for the
/// clock, when its status is produced.
#[derive(Clone)]
pub(super) struct Observed<S> {
    inner: S,
    metrics: Metrics,
}

impl<S> Observed<S> {
    pub(super) fn new(inner: S, metrics: Metrics) -> Self {
        Observed { inner, metrics }
    }
}

impl<S: NamedService> NamedService for Observed<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, RB> Service<http::Request<B>> for Observed<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>, Error = Infallible>,
    S::Future: Send + 'static,
    RB: HttpBody<Data = Bytes> + Send + 'static,
    RB::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let call = Call::start(&self.metrics, method_of(req.uri().path()));
        let answer = self.inner.call(req);
        match call {
            Some(call) => Box::pin(answer_with(answer, call)),
            None => Box::pin(async move { Ok(answer.await?.map(Body::new)) }),
        }
    }
}

async fn answer_with<F, RB>(answer: F, call: Call) -> Result<http::Response<Body>, Infallible>
where
    F: std::future::Future<Output = Result<http::Response<RB>, Infallible>>,
    RB: HttpBody<Data = Bytes> + Send + 'static,
    RB::Error: Into<tonic::codegen::StdError>,
{
    let res = answer.await?;
    if let Some(code) = res.headers().get("grpc-status") {
        call.finish(code.as_bytes());
        return Ok(res.map(Body::new));
    }
    if HttpBody::is_end_stream(res.body()) {
        call.finish(b"2"); // UNKNOWN: an answer without any status
        return Ok(res.map(Body::new));
    }
    let (parts, body) = res.into_parts();
    let body = ObservedBody {
        inner: Body::new(body),
        call: Some(call),
    };
    Ok(http::Response::from_parts(parts, Body::new(body)))
}

/// A call being timed.
struct Call {
    metrics: Metrics,
    method: &'static str,
    start: Instant,
}

impl Call {
    fn start(metrics: &Metrics, method: &'static str) -> Option<Self> {
        metrics.is_enabled().then(|| Call {
            metrics: metrics.clone(),
            method,
            start: Instant::now(),
        })
    }

    /// Records the call with its `grpc-status` value (ASCII digits).
    fn finish(self, status: &[u8]) {
        let code = std::str::from_utf8(status)
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
            .map_or(tonic::Code::Unknown, tonic::Code::from_i32);
        self.record(code);
    }

    fn record(self, code: tonic::Code) {
        let elapsed: Duration = self.start.elapsed();
        self.metrics.request(self.method, code_name(code), elapsed);
    }
}

/// A response body that records its call when the trailers go by, or as CANCELLED when
/// it is dropped before them (the client went away).
struct ObservedBody {
    inner: Body,
    call: Option<Call>,
}

impl HttpBody for ObservedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(|t| t.get("grpc-status"))
                    && let Some(call) = self.call.take()
                {
                    call.finish(status.as_bytes());
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.call.take() {
                    call.record(tonic::Code::Internal);
                }
            }
            Poll::Ready(None) => {
                if let Some(call) = self.call.take() {
                    call.record(tonic::Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.record(tonic::Code::Cancelled);
        }
    }
}

/// The Trainer method a path names, from the service's own descriptor, or "unknown": a
/// fixed set, so a client sending made-up paths cannot grow the metrics' label set.
fn method_of(path: &str) -> &'static str {
    static METHODS: OnceLock<Vec<&'static str>> = OnceLock::new();
    let methods = METHODS.get_or_init(trainer_methods);
    path.strip_prefix("/backprop.v1.Trainer/")
        .and_then(|m| methods.iter().find(|&&known| known == m))
        .copied()
        .unwrap_or("unknown")
}

fn trainer_methods() -> Vec<&'static str> {
    use prost::Message;
    let Ok(set) = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    set.file
        .iter()
        .filter(|f| f.package() == "backprop.v1")
        .flat_map(|f| &f.service)
        .filter(|s| s.name() == "Trainer")
        .flat_map(|s| &s.method)
        // Leaked once per process: a few dozen bytes that label every call.
        .map(|m| &*Box::leak(m.name().to_string().into_boxed_str()))
        .collect()
}

/// Serves `GET /metrics` on `listener` (HTTP/1.1, plaintext: keep it on a private
/// address), reading the gauges from `gauges` at each scrape, and folds histogram samples
/// every few seconds between scrapes. Everything stops when the guard drops.
pub(super) fn serve(
    listener: TcpListener,
    metrics: Metrics,
    gauges: impl Fn() -> Gauges + Send + Sync + 'static,
) -> AbortOnDrop {
    let gauges = std::sync::Arc::new(gauges);
    AbortOnDrop(tokio::spawn(async move {
        let mut connections = JoinSet::new();
        let mut upkeep = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = upkeep.tick() => metrics.upkeep(),
                accepted = listener.accept() => {
                    while connections.try_join_next().is_some() {}
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            tracing::warn!(error = %e, "metrics listener: accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let (metrics, gauges) = (metrics.clone(), gauges.clone());
                    let service = hyper::service::service_fn(move |req| {
                        let answer = scrape(&req, &metrics, gauges());
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    connections.spawn(async move {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        if let Err(e) = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await
                        {
                            tracing::debug!(error = %e, "metrics connection ended");
                        }
                    });
                }
            }
        }
    }))
}

fn scrape<B>(
    req: &http::Request<B>,
    metrics: &Metrics,
    now: Gauges,
) -> http::Response<Full<Bytes>> {
    let reply = |status: http::StatusCode, body: String| {
        let mut res = http::Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = status;
        res
    };
    if req.uri().path() != "/metrics" {
        return reply(http::StatusCode::NOT_FOUND, "try /metrics\n".into());
    }
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return reply(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "GET /metrics\n".into(),
        );
    }
    let mut res = reply(http::StatusCode::OK, metrics.render(now));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// Aborts a background task when dropped.
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_the_descriptor() {
        assert_eq!(method_of("/backprop.v1.Trainer/TrainStep"), "TrainStep");
        assert_eq!(method_of("/backprop.v1.Trainer/CreateModel"), "CreateModel");
        assert_eq!(method_of("/backprop.v1.Trainer/NoSuchThing"), "unknown");
        assert_eq!(method_of("/other.Service/TrainStep"), "unknown");
    }
}
