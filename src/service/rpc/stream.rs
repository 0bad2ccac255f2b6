//! TrainStream: many training steps on one model over one bidirectional stream, so a
//! client is bound by the server's step rate rather than by a round trip per step.
//!
//! Each batch goes through exactly what TrainStep does (`train::step_on`: the same checks,
//! admission, the session's write lock taken per batch in arrival order, the compute
//! pool), so a stream's steps equal the same TrainSteps bit for bit, and other calls on
//! the model, and on every other model, interleave with its steps. A refused batch is
//! answered with its own error and changes nothing; the stream goes on.
//!
//! Bounded: a reader task decodes at most [`READ_AHEAD`] batches ahead of the step in
//! progress (so the next batch is on the wire and decoded while the current one
//! computes), and at most [`GROUPS_IN_FLIGHT`] groups of answers wait to be sent. A
//! client that stops reading fills them, which stops the steps, which stops the reads,
//! and HTTP/2 flow control holds the rest on the client's side: nothing buffers without
//! limit. A client that goes away (or cancels) stops the stream at a step boundary.
//!
//! Answers are sent in groups of up to [`GROUP`] while the client is ahead (its next
//! batch has already arrived), and at once when it has not, so a client that sends one batch at a time
//! gets each answer without delay. Grouping keeps DATA frames large: an answer is about
//! 45 bytes, and h2 (the Rust HTTP/2 stack, since 0.4.20) ends a connection that holds
//! too many small unread frames (GOAWAY ENHANCE_YOUR_CALM, "too_many_data_frames"), which
//! one answer per frame would trip in a client that pauses reading.
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tonic_types::StatusExt;

use super::TrainerService;
use super::call::split;
use super::train::step_on;
use crate::pb;
use crate::service::route;
use crate::service::status::invalid;
use crate::session::Tenant;

/// Batches decoded ahead of the one being applied.
pub const READ_AHEAD: usize = 2;
/// Answers sent together at most while the client is ahead.
pub const GROUP: usize = 64;
/// Groups of answers that may wait to be sent before steps pause.
pub const GROUPS_IN_FLIGHT: usize = 4;

type Answer = Result<pb::TrainStreamResponse, Status>;

/// The answers, group by group, as one stream: a whole group is ready at once, so the
/// transport encodes it into one frame.
pub struct AnswerStream {
    groups: mpsc::Receiver<Vec<Answer>>,
    group: std::vec::IntoIter<Answer>,
}

impl Stream for AnswerStream {
    type Item = Answer;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Answer>> {
        loop {
            if let Some(a) = self.group.next() {
                return Poll::Ready(Some(a));
            }
            match self.groups.poll_recv(cx) {
                Poll::Ready(Some(g)) => self.group = g.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

pub async fn train_stream(
    svc: &TrainerService,
    req: Request<Streaming<pb::TrainStreamRequest>>,
) -> Result<Response<AnswerStream>, Status> {
    // The routing header is checked against the first message's model (see `route`).
    let metadata = req.metadata().clone();
    let (tenant, inbound) = split(req);
    let (batches_tx, batches) = mpsc::channel(READ_AHEAD);
    let (answers, groups) = mpsc::channel(GROUPS_IN_FLIGHT);
    tokio::spawn(read(inbound, batches_tx));
    tokio::spawn(apply(svc.clone(), tenant, metadata, batches, answers));
    Ok(Response::new(AnswerStream {
        groups,
        group: Vec::new().into_iter(),
    }))
}

/// What the reader passes on.
enum Inbound {
    Batch(pb::TrainStreamRequest),
    /// Nothing more has arrived from the client for now: answers held for grouping go
    /// out (the client may be waiting for them before it sends more).
    Idle,
    /// A message failed to decode: it ends the stream with this status.
    Failed(Status),
}

/// Decodes the client's messages into `batches`, in order, until the client ends the
/// stream, a message fails to decode or the stepper is gone; says [`Inbound::Idle`]
/// whenever no further message is there yet.
async fn read(mut inbound: Streaming<pb::TrainStreamRequest>, batches: mpsc::Sender<Inbound>) {
    loop {
        let ready = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut inbound).poll_next(cx)));
        let next = match ready.await {
            Poll::Ready(next) => next,
            Poll::Pending => {
                if batches.send(Inbound::Idle).await.is_err() {
                    return;
                }
                inbound.next().await
            }
        };
        let (item, last) = match next {
            Some(Ok(m)) => (Inbound::Batch(m), false),
            Some(Err(s)) => (Inbound::Failed(s), true),
            None => (Inbound::Idle, true),
        };
        if batches.send(item).await.is_err() || last {
            return;
        }
    }
}

/// Applies the batches in order and answers each (grouped, see the module doc). The
/// model is the one the first message names; a later message may leave `model_id` empty
/// or repeat it.
async fn apply(
    svc: TrainerService,
    tenant: Tenant,
    metadata: MetadataMap,
    mut batches: mpsc::Receiver<Inbound>,
    answers: mpsc::Sender<Vec<Answer>>,
) {
    let mut model: Option<String> = None;
    let mut group = Vec::with_capacity(GROUP);
    while let Some(next) = batches.recv().await {
        let m = match next {
            Inbound::Batch(m) => m,
            Inbound::Idle if group.is_empty() => continue,
            Inbound::Idle => {
                let full = std::mem::replace(&mut group, Vec::with_capacity(GROUP));
                if answers.send(full).await.is_err() {
                    return;
                }
                continue;
            }
            Inbound::Failed(s) => {
                group.push(Err(s));
                break;
            }
        };
        let sequence = m.sequence;
        let routed =
            |id: &str| route::check(&metadata, Some(("model_id", id)), svc.store.replica());
        let result = match stream_model(&mut model, m.model_id, routed) {
            Ok(id) => one_batch(&svc, &tenant, id, m.x, m.labels, m.learning_rate).await,
            Err(s) => Err(s),
        };
        group.push(Ok(pb::TrainStreamResponse {
            sequence,
            result: Some(match result {
                Ok(step) => pb::train_stream_response::Result::Step(step),
                Err(s) => pb::train_stream_response::Result::Error(batch_error(&s)),
            }),
        }));
        if group.len() >= GROUP {
            let full = std::mem::replace(&mut group, Vec::with_capacity(GROUP));
            // The client went away: stop here, between steps.
            if answers.send(full).await.is_err() {
                return;
            }
        }
    }
    if !group.is_empty() {
        let _ = answers.send(group).await;
    }
}

/// The model this message trains: the first message names it (and must agree with the
/// routing header, `routed`), later ones may leave it empty; another model than the
/// stream's is refused for that message.
fn stream_model(
    model: &mut Option<String>,
    named: String,
    routed: impl FnOnce(&str) -> Result<(), Status>,
) -> Result<String, Status> {
    match model {
        None if named.is_empty() => Err(invalid(
            "model_id",
            "required on the first message of a stream",
        )),
        None => {
            routed(&named)?;
            *model = Some(named.clone());
            Ok(named)
        }
        Some(id) if named.is_empty() || named == *id => Ok(id.clone()),
        Some(_) => Err(invalid(
            "model_id",
            "a stream trains one model: the first message's (leave it empty or repeat it)",
        )),
    }
}

async fn one_batch(
    svc: &TrainerService,
    tenant: &Tenant,
    id: String,
    x: Option<pb::Tensor>,
    labels: Vec<u32>,
    learning_rate: Option<f64>,
) -> Result<pb::TrainStepResponse, Status> {
    let on = svc.on_batch(&id, tenant, &x)?;
    // The answer is a few numbers, bounded by the channel: nothing stays reserved.
    on.observe("TrainStream", step_on(&on, x, labels, learning_rate))
        .await
        .map(Response::into_inner)
}

/// What the client learns of a refused batch (or of a fit's failed step): what
/// TrainStep's status would have said.
pub(super) fn batch_error(s: &Status) -> pb::BatchError {
    pb::BatchError {
        code: s.code() as i32,
        message: s.message().to_string(),
        reason: s
            .get_details_error_info()
            .map(|i| i.reason)
            .unwrap_or_default(),
        field: s
            .get_details_bad_request()
            .and_then(|b| b.field_violations.into_iter().next())
            .map(|v| v.field)
            .unwrap_or_default(),
    }
}
