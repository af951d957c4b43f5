//! `sessiond health` (grpc.health.v1 Check, no key needed) and
//! `sessiond version` (this CLI's version, and the server's from
//! GetServerInfo unless `--client`).

use serde_json::json;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::Failure;
use super::connect::ConnectArgs;
use super::output::{self, Format};
use crate::pb;
use crate::pb::server_service_client::ServerServiceClient;
use crate::settings::Secret;

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
    /// Print this CLI's version only; ask no server.
    #[arg(long)]
    pub client: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
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

/// Prints the client's version, then asks the server for its own: the
/// client's line is printed whether or not the server answers, and a
/// server that cannot be reached or refuses the key fails the command with
/// its exit code.
pub async fn version(args: VersionArgs, key: Option<Secret>) -> Result<(), Failure> {
    let client = crate::service::server_info::VERSION;
    let connect = &args.connect;
    let server = match args.client {
        true => None,
        false => Some(server_info(connect, key).await),
    };
    let answered = match &server {
        Some(Ok(info)) => Some(info),
        _ => None,
    };
    match connect.output {
        Format::Json => {
            let mut object = json!({"version": client, "client": {"version": client}});
            if let Some(info) = answered {
                object["server"] = json!({
                    "version": info.version,
                    "build_profile": info.build_profile,
                    "build_target": info.build_target,
                    "store": store_name(info.store()),
                    "schema_version": info.schema_version,
                    "started_at": output::time(info.started_at.as_ref()),
                });
            }
            output::line(&object)?;
        }
        Format::Table => {
            output::text(&format!("client: sessiond {client}"))?;
            if let Some(info) = answered {
                let started = output::cell(Some(&output::time(info.started_at.as_ref())));
                output::text(&format!(
                    "server: sessiond {} ({} {}), store {} (schema {}), started {started}",
                    output::escape(&info.version),
                    output::escape(&info.build_profile),
                    output::escape(&info.build_target),
                    store_name(info.store()),
                    info.schema_version,
                ))?;
            }
        }
    }
    match server {
        Some(Err(failure)) => Err(failure),
        _ => Ok(()),
    }
}

/// GetServerInfo, within `--timeout`.
async fn server_info(connect: &ConnectArgs, key: Option<Secret>) -> Result<pb::GetServerInfoResponse, Failure> {
    let client = connect.connect(key).await?;
    let mut server = ServerServiceClient::new(client);
    let answer = tokio::time::timeout(connect.timeout, server.get_server_info(pb::GetServerInfoRequest {}))
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer in time"))??;
    Ok(answer.into_inner())
}

fn store_name(store: pb::StoreKind) -> &'static str {
    match store {
        pb::StoreKind::Embedded => "embedded",
        pb::StoreKind::Postgres => "postgres",
        pb::StoreKind::Unspecified => "unknown",
    }
}
