//! `sessiond.v1.StorageService`.

use tonic::{Request, Response, Status};

use super::authn::caller;
use super::convert::{self, parse_ref};
use super::pb;
use crate::domain::{InvalidInput, StorageChange, StorageLimits, Violations};
use crate::service::{Service, committing};

#[derive(Debug)]
pub struct StorageApi {
    service: Service,
}

impl StorageApi {
    pub fn new(service: Service) -> Self {
        Self { service }
    }

    fn limits(&self) -> &StorageLimits {
        &self.service.config().limits.storage
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
        let mut v = Violations::default();
        let session = v.check(parse_ref(session, "session"));
        self.limits().check_keys(&keys, "keys", &mut v);
        let session = v.finish(session)?;
        let storage = self.service.get_storage(&caller, &session, &keys).await?;
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
        let mut v = Violations::default();
        let session = v.check(parse_ref(session, "session"));
        if values.is_empty() {
            v.push(InvalidInput::new("values", "name at least one key"));
        }
        let values = convert::parse_storage(values, "values", self.limits(), &mut v);
        let session = v.finish(session)?;
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
        let mut v = Violations::default();
        let session = v.check(parse_ref(session, "session"));
        if keys.is_empty() {
            v.push(InvalidInput::new("keys", "name at least one key"));
        }
        self.limits().check_keys(&keys, "keys", &mut v);
        let session = v.finish(session)?;
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
