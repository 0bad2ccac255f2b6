//! Routing across replicas (docs/DEPLOY.md). Several servers, each started with its own
//! `--replica-id`, sit behind an ordinary gRPC proxy (nginx, HAProxy, Envoy). A proxy
//! cannot read a protobuf body, so a call that names a session carries the id again as
//! metadata, [`ROUTE_HEADER`]; the proxy sends the call to the replica the id's prefix
//! names. A call that names no session may carry a bare replica name there to reach that
//! replica (ListModels of one replica, an upload meant for a model's replica), or nothing
//! (any replica will do).
//!
//! What the server checks, before any other work: the header is an id or a replica name;
//! an id in the header is the id the body names; and its replica is this one. A call
//! that reaches the wrong replica is refused with [`Reason::WrongReplica`], naming the
//! owner, so a misconfigured proxy shows up at its first call instead of as a
//! NOT_FOUND that looks like a lost session.
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::pb;
use crate::service::status::{Reason, Refusal, invalid};
use crate::session::id::is_replica_name;
use crate::session::{Replica, SessionId};

/// The metadata key that routes a call: a model or dataset id, or a replica name.
pub const ROUTE_HEADER: &str = "x-backprop-model";

/// Which field of a request names the session (or dataset) it is for: the field's name
/// and value. Every RPC's request says it here, in one table, so that a new RPC has to
/// decide (and the header test walks them all).
pub trait Routed {
    /// `None` for calls that name nothing (CreateModel, the lists, the client streams,
    /// whose first message is read later).
    fn routed_id(&self) -> Option<(&'static str, &str)>;
}

macro_rules! routed_by {
    ($field:ident: $($t:ty),+ $(,)?) => {$(
        impl Routed for $t {
            fn routed_id(&self) -> Option<(&'static str, &str)> {
                Some((stringify!($field), &self.$field))
            }
        }
    )+};
}

macro_rules! routed_by_nothing {
    ($($t:ty),+ $(,)?) => {$(
        impl Routed for $t {
            fn routed_id(&self) -> Option<(&'static str, &str)> {
                None
            }
        }
    )+};
}

routed_by!(model_id:
    pb::ForwardRequest,
    pb::BackwardRequest,
    pb::TrainStepRequest,
    pb::ApplyGradientsRequest,
    pb::EvaluateRequest,
    pb::GetModelRequest,
    pb::DeleteModelRequest,
    pb::UpdateModelRequest,
    pb::GradientCheckRequest,
    pb::ExportModelRequest,
    pb::TraceStepRequest,
    pb::FitRequest,
    pb::WatchFitRequest,
    pb::CancelFitRequest,
    pb::GetHistoryRequest,
);
routed_by!(dataset_id: pb::GetDatasetRequest, pb::DeleteDatasetRequest);
routed_by_nothing!(
    pb::CreateModelRequest,
    pb::ListModelsRequest,
    pb::ListDatasetsRequest,
    tonic::Streaming<pb::CheckpointChunk>,
    tonic::Streaming<pb::DatasetChunk>,
    tonic::Streaming<pb::TrainStreamRequest>,
);

/// What the routing header says, once checked to be well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// A model or dataset id.
    Id(&'a str),
    /// A bare replica name.
    Replica(&'a str),
}

impl<'a> Route<'a> {
    /// The header of `metadata`, if any. A value that is neither an id nor a replica
    /// name is INVALID_ARGUMENT.
    pub fn of(metadata: &'a MetadataMap) -> Result<Option<Route<'a>>, Status> {
        let Some(value) = metadata.get(ROUTE_HEADER) else {
            return Ok(None);
        };
        let text = value.to_str().unwrap_or("");
        if SessionId::parse(text).is_some() {
            Ok(Some(Route::Id(text)))
        } else if is_replica_name(text) {
            Ok(Some(Route::Replica(text)))
        } else {
            Err(invalid(
                ROUTE_HEADER,
                format!(
                    "{} is neither a model or dataset id nor a replica name",
                    crate::service::limits::echo(&String::from_utf8_lossy(value.as_bytes()))
                ),
            ))
        }
    }

    /// The replica the header routes to (`None`: an id without a replica part).
    fn replica(self) -> Option<&'a str> {
        match self {
            Route::Id(id) => SessionId::parse(id).and_then(|p| p.replica),
            Route::Replica(name) => Some(name),
        }
    }
}

/// Checks a call's routing header against the id its body names (`body`: field and
/// value, see [`Routed`]) and against this server's replica, `here`.
pub fn check(
    metadata: &MetadataMap,
    body: Option<(&str, &str)>,
    here: Replica,
) -> Result<(), Status> {
    let Some(route) = Route::of(metadata)? else {
        return Ok(());
    };
    if let Some((field, id)) = body {
        let agrees = match (route, SessionId::parse(id)) {
            (Route::Id(h), Some(b)) => SessionId::parse(h) == Some(b),
            (Route::Replica(name), Some(b)) => b.replica == Some(name),
            // A malformed body id is the body's own error, found by its handler.
            (_, None) => true,
        };
        if !agrees {
            return Err(invalid(
                ROUTE_HEADER,
                format!(
                    "the routing header says {} but the request's {field} is {}: they \
                     must name the same {} (the proxy routes on the header, the server \
                     acts on the body)",
                    route_text(route),
                    crate::service::limits::echo(id),
                    if matches!(route, Route::Id(_)) {
                        "id"
                    } else {
                        "replica"
                    },
                ),
            ));
        }
    }
    let owner = route.replica();
    if here.name() == owner {
        return Ok(());
    }
    Err(match route {
        Route::Id(id) => wrong_replica(&format!("{ROUTE_HEADER} {id}"), owner, here),
        Route::Replica(name) => refusal(
            format!(
                "the call's {ROUTE_HEADER} header sends it to replica {name}, but this is \
                 replica {here}: a proxy in front of several replicas must route each call \
                 on that header (docs/DEPLOY.md)"
            ),
            owner,
            here,
        ),
    })
}

fn route_text(route: Route<'_>) -> String {
    match route {
        Route::Id(id) => id.to_string(),
        Route::Replica(name) => format!("replica {name}"),
    }
}

/// The refusal of a call for `what` (an id or a header), which belongs to `owner`
/// (`None`: an id without a replica part) and reached replica `here`.
pub fn wrong_replica(what: &str, owner: Option<&str>, here: Replica) -> Status {
    let message = match (owner, here.name()) {
        (Some(owner), Some(_)) => format!(
            "{what} is held by replica {owner}, but this is replica {here}: a proxy in \
             front of several replicas must route each call on its {ROUTE_HEADER} header \
             (the clients set it; docs/DEPLOY.md)"
        ),
        (Some(owner), None) => format!(
            "{what} belongs to replica {owner}, and this server has no --replica-id: \
             route the call to replica {owner} on its {ROUTE_HEADER} header"
        ),
        (None, _) => format!(
            "{what} has no replica part, so it is not this replica's ({here}), whose ids \
             start with \"{here}.\": the call reached a replica instead of the single \
             server that made the id"
        ),
    };
    refusal(message, owner, here)
}

/// WRONG_REPLICA with `message`, its ErrorInfo naming this `replica` and the `owner`.
fn refusal(message: String, owner: Option<&str>, here: Replica) -> Status {
    let mut refusal = Refusal::new(Reason::WrongReplica, message).meta("replica", here.to_string());
    if let Some(owner) = owner {
        refusal = refusal.meta("owner", owner);
    }
    refusal.into()
}

/// `msg` as a request carrying the routing header of the id its body names, for
/// clients (the CLI, `backprop bench`). A body whose id is not of an id's shape gets no
/// header, so the server's answer names the body's field.
pub fn routed<T: Routed>(msg: T) -> tonic::Request<T> {
    let to = msg.routed_id().map(|(_, id)| id.to_owned());
    routed_to(msg, to.as_deref().unwrap_or(""))
}

/// `msg` as a request routed to `to`: an id, or a replica name (for calls that name
/// nothing in their body, such as an upload meant for a model's replica, or a client
/// stream). Anything else, the empty string included, adds no header.
pub fn routed_to<T>(msg: T, to: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if (SessionId::parse(to).is_some() || is_replica_name(to))
        && let Ok(value) = tonic::metadata::AsciiMetadataValue::try_from(to)
    {
        req.metadata_mut().insert(ROUTE_HEADER, value);
    }
    req
}
