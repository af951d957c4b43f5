//! Privileges held by a session: set, read (expanded), clear, check, and
//! time-limited promotions. Grants are written with compare-and-set on the
//! session's grants version, so concurrent changes never overwrite each
//! other.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::auth::{Caller, Permission};
use crate::domain::{EventType, Grants, Promotion, PromotionId, Session};
use crate::service::Error;
use crate::store::StoreError;

use super::{Opened, Service, SessionRef};

/// Attempts at a grants compare-and-set before answering `Contended`. Within
/// one process changes queue on the session's lock; only other processes
/// sharing the store can make an attempt fail.
const CAS_ATTEMPTS: usize = 16;

/// How a batch check combines its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    Any,
    All,
}

/// What GetPrivileges answers.
#[derive(Debug, Clone)]
pub struct PrivilegeView {
    pub expanded: BTreeSet<String>,
    pub grants: Grants,
    pub trusted: bool,
}

impl Service {
    /// Applies `change` to the session's grants with compare-and-set,
    /// re-reading and retrying when another write got there first.
    async fn change_grants<T>(
        &self,
        caller: &Caller,
        session: &SessionRef,
        mut change: impl FnMut(&mut Grants) -> Result<T, Error>,
    ) -> Result<(Session, T), Error> {
        let mut session = self.open_session(caller, session).await?;
        let _serialised = self.inner.locks.lock(&session.id).await;
        for _ in 0..CAS_ATTEMPTS {
            let mut grants = session.grants.clone().without_expired_promotions(self.now());
            let answer = change(&mut grants)?;
            let event = self.event(&session, EventType::PrivilegesChanged, None);
            match self.stores().sessions.update_grants(&session.id, session.grants_version, &grants, &event).await {
                Ok((version, event)) => {
                    self.publish(event);
                    session.grants = grants;
                    session.grants_version = version;
                    return Ok((session, answer));
                }
                Err(StoreError::Conflict { .. }) => {
                    session = self.open_session(caller, &SessionRef::found(session.id.clone())).await?;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(Error::Contended)
    }

    pub(super) fn expanded(&self, session: &Session) -> BTreeSet<String> {
        self.roles().expand(&session.grants, session.trusted, self.now())
    }

    /// Replaces the granted privileges and roles (canonical names, from
    /// `RoleBook::grants`); promotions stay.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn set_privileges(
        &self,
        caller: &Caller,
        session: &SessionRef,
        parsed: Grants,
    ) -> Result<BTreeSet<String>, Error> {
        caller.require(Permission::ChangePrivileges)?;
        let (session, ()) = self
            .change_grants(caller, session, |grants| {
                grants.privileges.clone_from(&parsed.privileges);
                grants.roles.clone_from(&parsed.roles);
                Ok(())
            })
            .await?;
        Ok(self.expanded(&session))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn get_privileges(&self, caller: &Caller, session: &SessionRef) -> Result<PrivilegeView, Error> {
        let session = self.open_session(caller, session).await?;
        let now = self.now();
        Ok(PrivilegeView {
            expanded: self.expanded(&session),
            grants: session.grants.clone().without_expired_promotions(now),
            trusted: session.trusted,
        })
    }

    /// Removes every grant and promotion. A trusted session stays trusted:
    /// that is what it was created as.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn clear_privileges(&self, caller: &Caller, session: &SessionRef) -> Result<(), Error> {
        caller.require(Permission::ChangePrivileges)?;
        self.change_grants(caller, session, |grants| {
            *grants = Grants::default();
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Whether a privilege (canonical, checked at the edge) is held.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn has_privilege(&self, caller: &Caller, session: &SessionRef, privilege: &str) -> Result<bool, Error> {
        let Opened { record, now } = self.open_record(caller, session).await?;
        Ok(record.holds(&self.roles(), now, privilege))
    }

    /// One answer per privilege (canonical, checked at the edge), and their
    /// combination by `mode`.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn check_privileges(
        &self,
        caller: &Caller,
        session: &SessionRef,
        names: &[String],
        mode: CheckMode,
    ) -> Result<(bool, Vec<bool>), Error> {
        let book = self.roles();
        let Opened { record, now } = self.open_record(caller, session).await?;
        let held: Vec<bool> = names.iter().map(|p| record.holds(&book, now, p)).collect();
        let granted = match mode {
            CheckMode::Any => held.iter().any(|h| *h),
            CheckMode::All => held.iter().all(|h| *h),
        };
        Ok((granted, held))
    }

    /// Grants `privilege` (canonical) until `duration` from now; both were
    /// checked at the edge.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn promote(
        &self,
        caller: &Caller,
        session: &SessionRef,
        privilege: String,
        duration: Duration,
    ) -> Result<Promotion, Error> {
        caller.require(Permission::ChangePrivileges)?;
        let id = self.open_session(caller, session).await?.id;
        let promotion = Promotion { id: PromotionId::generate_for(&id), privilege, expires_at: self.now() + duration };
        let max = self.inner.config.limits.max_promotions_per_session;
        let (_, promotion) = self
            .change_grants(caller, &SessionRef::found(id), |grants| {
                // Expired promotions are already dropped: these are in force.
                if grants.promotions.len() >= max {
                    return Err(Error::QuotaExceeded {
                        subject: "promotions".into(),
                        description: format!("at most {max} promotions are in force on a session at once"),
                    });
                }
                grants.promotions.push(promotion.clone());
                Ok(promotion.clone())
            })
            .await?;
        Ok(promotion)
    }

    /// Ends a promotion early. Idempotent, like closing: a promotion this
    /// session had that is already over (demoted or expired) answers OK
    /// without a change; an id the session never had is NOT_FOUND.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn demote(&self, caller: &Caller, session: &SessionRef, promotion: &PromotionId) -> Result<(), Error> {
        caller.require(Permission::ChangePrivileges)?;
        let current = self.open_session(caller, session).await?;
        let now = self.now();
        let in_force = current.grants.promotions.iter().any(|p| p.id == *promotion && p.expires_at > now);
        if !in_force {
            return if promotion.issued_for(&current.id) {
                Ok(())
            } else {
                Err(Error::NotFound { what: "promotion", name: promotion.as_str().to_owned() })
            };
        }
        self.change_grants(caller, &SessionRef::found(current.id.clone()), |grants| {
            grants.promotions.retain(|p| p.id != *promotion);
            Ok(())
        })
        .await?;
        Ok(())
    }
}
