//! The echo baseline server: `sessiond.bench.v1.EchoService` on the same
//! server stack as sessiond (`tonic::transport::Server` over a bound
//! listener, the multi-thread runtime of `#[tokio::main]`), plus
//! `grpc.health.v1` so that the harness waits for it exactly as it waits
//! for sessiond. It does no work: what a sessiond call costs beyond an echo
//! is sessiond's own.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// Generated protobuf types and tonic stubs for `sessiond.bench.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("sessiond.bench.v1");
}

/// Answers each request with its payload.
#[derive(Debug, Default)]
struct Echo;

#[tonic::async_trait]
impl pb::echo_service_server::EchoService for Echo {
    async fn echo(&self, request: Request<pb::EchoRequest>) -> Result<Response<pb::EchoResponse>, Status> {
        let pb::EchoRequest { payload } = request.into_inner();
        Ok(Response::new(pb::EchoResponse { payload }))
    }
}

/// Serves the echo baseline on `listen` until the process is killed.
///
/// It is served as sessiond serves: a bound listener handed to
/// `serve_with_incoming` as a `TcpIncoming` with `TCP_NODELAY` on, HTTP/1.1
/// accepted beside HTTP/2, and sessiond's default streams per connection,
/// keepalive pings and connection ages (hyper reads the clock on every
/// frame it receives when keepalive pings are on); and it runs with
/// sessiond's allocator (`main.rs`). So the ratio to the echo is what
/// sessiond's own work adds. Should sessiond serve otherwise, so should
/// this.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<pb::echo_service_server::EchoServiceServer<Echo>>().await;
    let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let transport = sessiond_transport();
    tonic::transport::Server::builder()
        .max_concurrent_streams(transport.max_concurrent_streams)
        .http2_keepalive_interval(Some(transport.keepalive_interval))
        .http2_keepalive_timeout(Some(transport.keepalive_timeout))
        .max_connection_age(transport.max_connection_age)
        .max_connection_age_grace(transport.max_connection_age_grace)
        .accept_http1(true)
        .add_service(health_service)
        .add_service(pb::echo_service_server::EchoServiceServer::new(Echo))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
        .with_context(|| format!("serving the echo baseline on {listen}"))
}

/// sessiond's connection settings when it is started with no flag and no
/// `SESSIOND_*` variable, as the benchmark starts it.
fn sessiond_transport() -> sessiond::settings::TransportSettings {
    use clap::Parser as _;
    sessiond::settings::Settings::parse_from(["sessiond"]).transport
}
