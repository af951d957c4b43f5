//! `echo`: the baseline. Each call sends 64 bytes, about what a sessiond
//! request naming a session by token weighs, and gets them back.

use tonic::Status;
use tonic::transport::Channel;

use super::{Context, Scenario};
use crate::echo::pb::EchoRequest;
use crate::echo::pb::echo_service_client::EchoServiceClient;
use crate::load::{Caller, Outcome};
use crate::report::LoadReport;

const PAYLOAD_BYTES: usize = 64;

struct EchoCaller {
    client: EchoServiceClient<Channel>,
}

impl Caller for EchoCaller {
    async fn call(&mut self) -> Result<Outcome, Status> {
        let request = EchoRequest { payload: vec![b'x'; PAYLOAD_BYTES] };
        self.client.echo(request).await?;
        Ok(Outcome::ONE)
    }
}

/// Starts the echo server and measures it.
pub async fn run(ctx: &Context) -> anyhow::Result<LoadReport> {
    let mut server = ctx.launcher.echo().await?;
    let channels = server.channels(ctx.plan.connections).await?;
    ctx.measure_load(Scenario::Echo, &mut server, &channels, |_, channel| EchoCaller {
        client: EchoServiceClient::new(channel),
    })
    .await
}
