//! The last pass over every Trainer answer: an error status leaves with a
//! `google.rpc.ErrorInfo`, whoever made it. The service builds each of its statuses with
//! one (`service::status::Refusal`); what the gRPC machinery makes inside the Trainer's
//! stack (an undecodable request is INTERNAL, an unknown method UNIMPLEMENTED, a message
//! over the size limit) gets one here, its reason named after its code, so a client can
//! rely on every error of ours carrying a reason.
//!
//! tonic refuses a message over `max_decoding_message_size` (or an answer over
//! `max_encoding_message_size`) with OUT_OF_RANGE, but gRPC (grpc-go, grpc-java, C core)
//! answers RESOURCE_EXHAUSTED for a message over the configured maximum, and so does our
//! contract for every server limit. The Trainer never returns OUT_OF_RANGE itself, so
//! that code becomes RESOURCE_EXHAUSTED with reason MESSAGE_LIMIT and a QuotaFailure
//! naming `--max-message-mib`; tonic's message is kept as it is.
//!
//! The status is in the headers of a trailers-only answer (every error the handlers, the
//! interceptor or the codec return before a message) and in the trailers otherwise (an
//! answer that failed to encode, a stream that failed midway): both are looked at.
//!
//! Not covered, as it is made outside the server's service stack: the CANCELLED tonic
//! answers when a call's own `grpc-timeout` expires (the client's deadline fires at the
//! same moment, and it reports its own DEADLINE_EXCEEDED).
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Bytes;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::metrics::{Metrics, Shed};
use crate::service::status::{Reason, Refusal};

/// Wraps a gRPC service so that each of its error statuses carries an ErrorInfo.
#[derive(Clone)]
pub(super) struct WithErrorInfo<S> {
    inner: S,
    explain: Explain,
}

/// What the pass needs to explain a status: the message limit (for its QuotaFailure),
/// and the metrics that count refusals for size.
#[derive(Clone)]
struct Explain {
    metrics: Metrics,
    max_message_bytes: usize,
}

impl<S> WithErrorInfo<S> {
    pub(super) fn new(inner: S, metrics: Metrics, max_message_bytes: usize) -> Self {
        WithErrorInfo {
            inner,
            explain: Explain {
                metrics,
                max_message_bytes,
            },
        }
    }
}

impl<S: NamedService> NamedService for WithErrorInfo<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, RB> Service<http::Request<B>> for WithErrorInfo<S>
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
        let answer = self.inner.call(req);
        let explain = self.explain.clone();
        Box::pin(async move {
            let mut res = answer.await?;
            if res.headers().contains_key(GRPC_STATUS) {
                explain.rewrite(res.headers_mut());
                return Ok(res.map(Body::new));
            }
            Ok(res.map(|inner| {
                Body::new(ExplainedBody {
                    inner: Body::new(inner),
                    explain,
                })
            }))
        })
    }
}

const GRPC_STATUS: &str = "grpc-status";
const GRPC_MESSAGE: &str = "grpc-message";
const GRPC_DETAILS: &str = "grpc-status-details-bin";

impl Explain {
    /// Gives the status in `map` (headers or trailers) an ErrorInfo if it is an error
    /// without one.
    fn rewrite(&self, map: &mut http::HeaderMap) {
        // Most answers are OK: they are not parsed at all.
        if map
            .get(GRPC_STATUS)
            .is_none_or(|code| code.as_bytes() == b"0")
        {
            return;
        }
        let Some(status) = Status::from_header_map(map) else {
            return;
        };
        let Some(explained) = self.explained(&status) else {
            return;
        };
        for name in [GRPC_STATUS, GRPC_MESSAGE, GRPC_DETAILS] {
            map.remove(name);
        }
        if let Err(e) = explained.add_header(map) {
            // Only a message that is not a valid header could fail, and it was one.
            tracing::error!(error = %e, "could not write an error status back");
            let _ = status.add_header(map);
        }
    }

    /// `status` with an ErrorInfo, or `None` when it needs none (OK, or already
    /// explained).
    fn explained(&self, status: &Status) -> Option<Status> {
        // Details that do not decode are not ours: they are replaced.
        let details = status.check_error_details().unwrap_or_default();
        let refusal = match status.code() {
            Code::Ok => return None,
            Code::OutOfRange => {
                self.metrics.shed(Shed::MessageTooLarge);
                let limit = self.max_message_bytes;
                let description = match found_bytes(status.message()) {
                    Some(found) => {
                        format!("a message of {found} bytes, more than the {limit}-byte limit")
                    }
                    None => format!("a message over the {limit}-byte limit"),
                };
                Refusal::with_details(Reason::MessageLimit, status.message(), details)
                    .limit("--max-message-mib", description)
            }
            _ if details.error_info().is_some() => return None,
            code => Refusal::with_details(Reason::Transport(code), status.message(), details),
        };
        Some(refusal.into())
    }
}

/// The message's size from tonic's size-limit message ("... found {len} bytes, the limit
/// is: {limit} bytes"), if it says it.
fn found_bytes(message: &str) -> Option<u64> {
    let (_, rest) = message.split_once("found ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// An answer's body whose trailers go through [`Explain::rewrite`].
struct ExplainedBody {
    inner: Body,
    explain: Explain,
}

impl HttpBody for ExplainedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                let mut trailers = match frame.into_trailers() {
                    Ok(t) => t,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                };
                self.explain.rewrite(&mut trailers);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explain() -> Explain {
        Explain {
            metrics: Metrics::disabled(),
            max_message_bytes: 4096,
        }
    }

    fn after(status: Status) -> Status {
        let mut map = http::HeaderMap::new();
        status.add_header(&mut map).unwrap();
        explain().rewrite(&mut map);
        Status::from_header_map(&map).unwrap()
    }

    #[test]
    fn a_transport_status_gets_a_reason_named_after_its_code() {
        let s = after(Status::internal("failed to decode Protobuf message"));
        assert_eq!(s.code(), Code::Internal);
        assert_eq!(s.message(), "failed to decode Protobuf message");
        let info = s.get_details_error_info().expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("INTERNAL", "backprop")
        );
    }

    #[test]
    fn the_size_limit_is_resource_exhausted_naming_its_flag() {
        let message =
            "Error, decoded message length too large: found 5000 bytes, the limit is: 4096 bytes";
        let s = after(Status::out_of_range(message));
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.message(), message);
        let info = s.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "MESSAGE_LIMIT");
        let quota = s.get_details_quota_failure().expect("QuotaFailure");
        assert_eq!(quota.violations[0].subject, "--max-message-mib");
        assert_eq!(
            quota.violations[0].description,
            "a message of 5000 bytes, more than the 4096-byte limit"
        );
    }

    #[test]
    fn a_status_with_a_reason_and_ok_are_left_alone() {
        let ours: Status = Refusal::new(Reason::QueueFull, "full").into();
        let mut map = http::HeaderMap::new();
        ours.add_header(&mut map).unwrap();
        let before = map.clone();
        explain().rewrite(&mut map);
        assert_eq!(map, before);
        let mut ok = http::HeaderMap::new();
        ok.insert(GRPC_STATUS, http::HeaderValue::from_static("0"));
        let before = ok.clone();
        explain().rewrite(&mut ok);
        assert_eq!(ok, before);
    }
}
