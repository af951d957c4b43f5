//! `sessiond.v1.StorageService`.

use tonic::{Request, Response, Status};

use super::authn::caller;
use super::convert::{self, parse_ref};
use super::pb;
use crate::domain::StorageChange;
use crate::service::{Service, committing};

#[derive(Debug)]
pub struct StorageApi {
    service: Service,
}

impl StorageApi {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

#[tonic::async_trait]
impl pb::storage_service_server::StorageService for StorageApi {
    async fn get_storage(
        &self,
        request: Request<pb::GetStorageRequest>,
    ) -> Result<Response<pb::GetStorageResponse>, Status> {
        let caller = caller(&request)?;
        let pb::GetStorageRequest { session, keys } = request.into_inner();
        let storage = self.service.get_storage(&caller, &parse_ref(session, "session")?, &keys).await?;
        Ok(Response::new(pb::GetStorageResponse {
            values: convert::proto_storage(storage.values),
            version: storage.version,
        }))
    }

    async fn put_storage(
        &self,
        request: Request<pb::PutStorageRequest>,
    ) -> Result<Response<pb::PutStorageResponse>, Status> {
        let caller = caller(&request)?;
        let pb::PutStorageRequest { session, values, expected_version } = request.into_inner();
        let session = parse_ref(session, "session")?;
        let values = convert::parse_storage(values, "values")?;
        let (version, sequence) =
            committing(self.service.change_storage(&caller, &session, StorageChange::Put(values), expected_version))
                .await;
        Ok(Response::new(pb::PutStorageResponse { version: version?, sequence }))
    }

    async fn delete_storage(
        &self,
        request: Request<pb::DeleteStorageRequest>,
    ) -> Result<Response<pb::DeleteStorageResponse>, Status> {
        let caller = caller(&request)?;
        let pb::DeleteStorageRequest { session, keys, expected_version } = request.into_inner();
        let session = parse_ref(session, "session")?;
        let (version, sequence) =
            committing(self.service.change_storage(&caller, &session, StorageChange::Delete(keys), expected_version))
                .await;
        Ok(Response::new(pb::DeleteStorageResponse { version: version?, sequence }))
    }

    async fn clear_storage(
        &self,
        request: Request<pb::ClearStorageRequest>,
    ) -> Result<Response<pb::ClearStorageResponse>, Status> {
        let caller = caller(&request)?;
        let pb::ClearStorageRequest { session, expected_version } = request.into_inner();
        let session = parse_ref(session, "session")?;
        let (version, sequence) =
            committing(self.service.change_storage(&caller, &session, StorageChange::Clear, expected_version)).await;
        Ok(Response::new(pb::ClearStorageResponse { version: version?, sequence }))
    }
}
