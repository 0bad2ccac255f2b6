//! `backprop health`: one `grpc.health.v1.Health/Check`, for Docker's HEALTHCHECK and for
//! people. Exit 0 and print SERVING only when the answer is SERVING; anything else
//! (refused, timed out, NOT_SERVING, unknown service) exits 1, which Docker reads as
//! unhealthy (it reserves exit code 2).
use std::time::Duration;

use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::client::{self, ServerArgs};
use super::error::CliError;

#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The service to ask about; "" asks about the server as a whole. The default is the
    /// Trainer because the server turns it NOT_SERVING as soon as it starts shutting down,
    /// while "" stays SERVING until the process is gone.
    #[arg(long, default_value = "backprop.v1.Trainer", value_name = "NAME")]
    pub service: String,
    /// Give up after this many seconds (connecting and asking together).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
}

pub async fn health(args: HealthArgs) -> Result<(), CliError> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let check = async {
        let channel = client::connect(&args.server, timeout).await?;
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: args.service.clone(),
        });
        request.set_timeout(timeout);
        HealthClient::new(channel)
            .check(request)
            .await
            .map_err(CliError::rpc("Health/Check"))
    };
    let no_answer = || CliError::NoAnswer {
        address: args.server.address.clone(),
        timeout,
    };
    let answer = match tokio::time::timeout(timeout, check).await {
        Ok(Ok(answer)) => answer.into_inner(),
        // tonic reports its own deadline as CANCELLED "Timeout expired".
        Ok(Err(CliError::Rpc {
            code: Code::Cancelled | Code::DeadlineExceeded,
            ..
        }))
        | Err(_) => return Err(no_answer()),
        Ok(Err(e)) => return Err(e),
    };
    let status = ServingStatus::try_from(answer.status).unwrap_or(ServingStatus::Unknown);
    let shown = if args.service.is_empty() {
        "server".to_string()
    } else {
        args.service.clone()
    };
    if status == ServingStatus::Serving {
        println!("SERVING");
        Ok(())
    } else {
        Err(CliError::Unhealthy {
            service: shown,
            status: status.as_str_name().to_string(),
        })
    }
}
