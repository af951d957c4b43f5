//! `sessiond.v1.PrivilegeService`.

use tonic::{Request, Response, Status};

use super::authn::caller;
use super::convert::{self, parse_ref};
use super::pb;
use crate::domain::{InvalidInput, PromotionId};
use crate::service::privileges::CheckMode;
use crate::service::{Service, committing};

#[derive(Debug)]
pub struct PrivilegesApi {
    service: Service,
}

impl PrivilegesApi {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

#[tonic::async_trait]
impl pb::privilege_service_server::PrivilegeService for PrivilegesApi {
    async fn set_privileges(
        &self,
        request: Request<pb::SetPrivilegesRequest>,
    ) -> Result<Response<pb::SetPrivilegesResponse>, Status> {
        let caller = caller(&request)?;
        let pb::SetPrivilegesRequest { session, privileges, roles } = request.into_inner();
        let session = parse_ref(session, "session")?;
        let (held, sequence) = committing(self.service.set_privileges(&caller, &session, &privileges, &roles)).await;
        Ok(Response::new(pb::SetPrivilegesResponse { privileges: held?.into_iter().collect(), sequence }))
    }

    async fn get_privileges(
        &self,
        request: Request<pb::GetPrivilegesRequest>,
    ) -> Result<Response<pb::GetPrivilegesResponse>, Status> {
        let caller = caller(&request)?;
        let pb::GetPrivilegesRequest { session } = request.into_inner();
        let view = self.service.get_privileges(&caller, &parse_ref(session, "session")?).await?;
        Ok(Response::new(pb::GetPrivilegesResponse {
            privileges: view.expanded.into_iter().collect(),
            granted_privileges: view.grants.privileges,
            roles: view.grants.roles,
            promotions: view.grants.promotions.into_iter().map(convert::promotion).collect(),
            trusted: view.trusted,
        }))
    }

    async fn clear_privileges(
        &self,
        request: Request<pb::ClearPrivilegesRequest>,
    ) -> Result<Response<pb::ClearPrivilegesResponse>, Status> {
        let caller = caller(&request)?;
        let pb::ClearPrivilegesRequest { session } = request.into_inner();
        let session = parse_ref(session, "session")?;
        let (cleared, sequence) = committing(self.service.clear_privileges(&caller, &session)).await;
        cleared?;
        Ok(Response::new(pb::ClearPrivilegesResponse { sequence }))
    }

    async fn has_privilege(
        &self,
        request: Request<pb::HasPrivilegeRequest>,
    ) -> Result<Response<pb::HasPrivilegeResponse>, Status> {
        let caller = caller(&request)?;
        let pb::HasPrivilegeRequest { session, privilege } = request.into_inner();
        let granted = self.service.has_privilege(&caller, &parse_ref(session, "session")?, &privilege).await?;
        Ok(Response::new(pb::HasPrivilegeResponse { granted }))
    }

    async fn check_privileges(
        &self,
        request: Request<pb::CheckPrivilegesRequest>,
    ) -> Result<Response<pb::CheckPrivilegesResponse>, Status> {
        let caller = caller(&request)?;
        let pb::CheckPrivilegesRequest { session, privileges, mode } = request.into_inner();
        let mode = match pb::CheckMode::try_from(mode) {
            Ok(pb::CheckMode::Any) => CheckMode::Any,
            Ok(pb::CheckMode::All | pb::CheckMode::Unspecified) => CheckMode::All,
            Err(_) => return Err(InvalidInput::new("mode", "must be ANY or ALL").into()),
        };
        let (granted, held) =
            self.service.check_privileges(&caller, &parse_ref(session, "session")?, &privileges, mode).await?;
        Ok(Response::new(pb::CheckPrivilegesResponse { granted, held }))
    }

    async fn promote(&self, request: Request<pb::PromoteRequest>) -> Result<Response<pb::PromoteResponse>, Status> {
        let caller = caller(&request)?;
        let pb::PromoteRequest { session, privilege, duration } = request.into_inner();
        let session = parse_ref(session, "session")?;
        let duration = duration.ok_or_else(|| InvalidInput::new("duration", "is required"))?;
        let duration = convert::parse_duration(&duration, "duration")?;
        let (promotion, sequence) = committing(self.service.promote(&caller, &session, &privilege, duration)).await;
        Ok(Response::new(pb::PromoteResponse { promotion: Some(convert::promotion(promotion?)), sequence }))
    }

    async fn demote(&self, request: Request<pb::DemoteRequest>) -> Result<Response<pb::DemoteResponse>, Status> {
        let caller = caller(&request)?;
        let pb::DemoteRequest { session, promotion_id } = request.into_inner();
        let session = parse_ref(session, "session")?;
        let promotion = PromotionId::parse(&promotion_id, "promotion_id")?;
        let (demoted, sequence) = committing(self.service.demote(&caller, &session, &promotion)).await;
        demoted?;
        Ok(Response::new(pb::DemoteResponse { sequence }))
    }
}
