//! `sessiond.v1.PrivilegeService`.

use tonic::{Request, Response, Status};

use super::authn::caller;
use super::convert::{self, parse_ref};
use super::pb;
use crate::domain::{InvalidInput, PromotionId, Violations, all};
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

    /// Privileges, or roles, one request may name.
    fn max_names(&self) -> usize {
        self.service.config().limits.max_names_per_request
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
        let mut v = Violations::default();
        let session = v.check(parse_ref(session, "session"));
        let grants = self.service.roles().grants(&privileges, &roles, self.max_names(), &mut v);
        let session = v.finish(session)?;
        let (held, sequence) = committing(self.service.set_privileges(&caller, &session, grants)).await;
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
        let mut v = Violations::default();
        let session = v.check(parse_ref(session, "session"));
        let privilege = v.check(self.service.roles().privilege_owned(privilege, "privilege"));
        let (session, privilege) = v.finish(session.zip(privilege))?;
        let granted = self.service.has_privilege(&caller, &session, &privilege).await?;
        Ok(Response::new(pb::HasPrivilegeResponse { granted }))
    }

    async fn check_privileges(
        &self,
        request: Request<pb::CheckPrivilegesRequest>,
    ) -> Result<Response<pb::CheckPrivilegesResponse>, Status> {
        let caller = caller(&request)?;
        let pb::CheckPrivilegesRequest { session, privileges, mode } = request.into_inner();
        let mut v = Violations::default();
        let session = v.check(parse_ref(session, "session"));
        if privileges.is_empty() {
            v.push(InvalidInput::new("privileges", "name at least one privilege"));
        }
        let names = self.service.roles().privileges(privileges, "privileges", self.max_names(), &mut v);
        let mode = match pb::CheckMode::try_from(mode) {
            Ok(pb::CheckMode::Any) => Some(CheckMode::Any),
            Ok(pb::CheckMode::All | pb::CheckMode::Unspecified) => Some(CheckMode::All),
            Err(_) => v.check(Err(InvalidInput::new("mode", "must be ANY or ALL"))),
        };
        let (session, mode) = v.finish(session.zip(mode))?;
        let (granted, held) = self.service.check_privileges(&caller, &session, &names, mode).await?;
        Ok(Response::new(pb::CheckPrivilegesResponse { granted, held }))
    }

    async fn promote(&self, request: Request<pb::PromoteRequest>) -> Result<Response<pb::PromoteResponse>, Status> {
        let caller = caller(&request)?;
        let pb::PromoteRequest { session, privilege, duration } = request.into_inner();
        let max = self.service.config().limits.max_promotion;
        let mut v = Violations::default();
        let session = v.check(parse_ref(session, "session"));
        let privilege = v.check(self.service.roles().privilege(&privilege, "privilege"));
        let duration = v.check(
            duration
                .ok_or_else(|| InvalidInput::new("duration", "is required"))
                .and_then(|d| convert::parse_duration(&d, "duration"))
                .and_then(|d| {
                    if d.is_zero() || d > max {
                        Err(InvalidInput::new("duration", format!("must be positive and at most {}s", max.as_secs())))
                    } else {
                        Ok(d)
                    }
                }),
        );
        let (session, privilege, duration) = v.finish(all(|| Some((session?, privilege?, duration?))))?;
        let (promotion, sequence) = committing(self.service.promote(&caller, &session, privilege, duration)).await;
        Ok(Response::new(pb::PromoteResponse { promotion: Some(convert::promotion(promotion?)), sequence }))
    }

    async fn demote(&self, request: Request<pb::DemoteRequest>) -> Result<Response<pb::DemoteResponse>, Status> {
        let caller = caller(&request)?;
        let pb::DemoteRequest { session, promotion_id } = request.into_inner();
        let mut v = Violations::default();
        let session = v.check(parse_ref(session, "session"));
        let promotion = v.check(PromotionId::parse(&promotion_id, "promotion_id"));
        let (session, promotion) = v.finish(session.zip(promotion))?;
        let (demoted, sequence) = committing(self.service.demote(&caller, &session, &promotion)).await;
        demoted?;
        Ok(Response::new(pb::DemoteResponse { sequence }))
    }
}
