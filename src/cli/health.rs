//! `sessiond health` (grpc.health.v1 Check, no key needed) and
//! `sessiond version`.

use serde_json::json;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::Failure;
use super::connect::ConnectArgs;
use super::output::{self, Format};

#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// The service to ask about (`sessiond.v1.SessionService`); default:
    /// the server as a whole.
    #[arg(long, default_value = "")]
    pub service: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct VersionArgs {
    /// `table` or `json`.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
}

pub async fn health(args: HealthArgs) -> Result<(), Failure> {
    let connect = &args.connect;
    let channel = connect.channel().await?;
    let request = HealthCheckRequest { service: args.service.clone() };
    let answer = tokio::time::timeout(connect.timeout, HealthClient::new(channel).check(request))
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer in time"))??;
    let status = ServingStatus::try_from(answer.into_inner().status).unwrap_or(ServingStatus::Unknown);
    let name = match status {
        ServingStatus::Serving => "SERVING",
        ServingStatus::NotServing => "NOT_SERVING",
        ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN",
        ServingStatus::Unknown => "UNKNOWN",
    };
    match connect.output {
        Format::Json => output::line(&json!({"address": connect.addr, "service": args.service, "status": name}))?,
        Format::Table => output::text(&format!("{}: {name}", connect.addr))?,
    }
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(Failure::NotServing { address: connect.addr.clone(), status: name })
    }
}

pub fn version(args: VersionArgs) -> Result<(), Failure> {
    let version = env!("CARGO_PKG_VERSION");
    match args.output {
        Format::Json => output::line(&json!({"version": version})),
        Format::Table => output::text(&format!("sessiond {version}")),
    }
}
