//! `sessiond.v1.ServerService`: what the answering sessiond is.

use tonic::{Request, Response, Status};

use super::authn::caller;
use super::convert::timestamp;
use super::pb;
use crate::service::Service;
use crate::service::server_info::{ServerInfo, StoreKind};

#[derive(Debug)]
pub struct ServerApi {
    service: Service,
}

impl ServerApi {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

impl From<StoreKind> for pb::StoreKind {
    fn from(kind: StoreKind) -> Self {
        match kind {
            StoreKind::Embedded => pb::StoreKind::Embedded,
            StoreKind::Postgres => pb::StoreKind::Postgres,
        }
    }
}

#[tonic::async_trait]
impl pb::server_service_server::ServerService for ServerApi {
    async fn get_server_info(
        &self,
        request: Request<pb::GetServerInfoRequest>,
    ) -> Result<Response<pb::GetServerInfoResponse>, Status> {
        let caller = caller(&request)?;
        let pb::GetServerInfoRequest {} = request.into_inner();
        let ServerInfo { version, build_profile, build_target, store, schema_version, started_at } =
            self.service.server_info(&caller);
        Ok(Response::new(pb::GetServerInfoResponse {
            version: version.to_owned(),
            build_profile: build_profile.to_owned(),
            build_target: build_target.to_owned(),
            store: pb::StoreKind::from(store).into(),
            schema_version,
            started_at: Some(timestamp(started_at)),
        }))
    }
}
