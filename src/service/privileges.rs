//! Privileges held by a session: set, read (expanded), clear, check, and
//! time-limited promotions. Grants are written with compare-and-set on the
//! session's grants version, so concurrent changes never overwrite each
//! other.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::auth::Caller;
use crate::domain::{Error, EventType, Grants, InvalidInput, Promotion, PromotionId, Session};
use crate::store::StoreError;

use super::{Service, SessionRef};

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
    /// Canonical names for requested privileges and roles, or every
    /// violation at once, named `privileges[i]` / `roles[i]`.
    pub(super) fn parse_grants(&self, privileges: &[String], roles: &[String]) -> Result<Grants, Vec<InvalidInput>> {
        let book = self.roles();
        let max = self.inner.config.limits.max_names_per_request;
        let mut violations = Vec::new();
        if privileges.len() > max {
            violations.push(InvalidInput::new("privileges", format!("at most {max} names")));
        }
        if roles.len() > max {
            violations.push(InvalidInput::new("roles", format!("at most {max} names")));
        }
        let mut grants = Grants::default();
        for (i, name) in privileges.iter().enumerate() {
            match book.privilege(name, &format!("privileges[{i}]")) {
                Ok(p) if !grants.privileges.contains(&p) => grants.privileges.push(p),
                Ok(_) => {}
                Err(v) => violations.push(v),
            }
        }
        for (i, name) in roles.iter().enumerate() {
            match book.role(name, &format!("roles[{i}]")) {
                Ok(r) if !grants.roles.contains(&r) => grants.roles.push(r),
                Ok(_) => {}
                Err(v) => violations.push(v),
            }
        }
        if violations.is_empty() { Ok(grants) } else { Err(violations) }
    }

    fn privilege_name(&self, name: &str, field: &str) -> Result<String, Error> {
        Ok(self.roles().privilege(name, field)?)
    }

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
            match self.store().update_grants(&session.id, session.grants_version, &grants, &event).await {
                Ok((version, event)) => {
                    self.publish(event);
                    session.grants = grants;
                    session.grants_version = version;
                    return Ok((session, answer));
                }
                Err(StoreError::Conflict { .. }) => {
                    session = self.open_session(caller, &SessionRef::id(session.id.clone())).await?;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(Error::Contended)
    }

    fn expanded(&self, session: &Session) -> BTreeSet<String> {
        self.roles().expand(&session.grants, session.trusted, self.now())
    }

    /// Replaces the granted privileges and roles; promotions stay.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn set_privileges(
        &self,
        caller: &Caller,
        session: &SessionRef,
        privileges: &[String],
        roles: &[String],
    ) -> Result<BTreeSet<String>, Error> {
        let parsed = self.parse_grants(privileges, roles).map_err(Error::InvalidArgument)?;
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
        self.change_grants(caller, session, |grants| {
            *grants = Grants::default();
            Ok(())
        })
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn has_privilege(&self, caller: &Caller, session: &SessionRef, privilege: &str) -> Result<bool, Error> {
        let privilege = self.privilege_name(privilege, "privilege")?;
        let session = self.open_session(caller, session).await?;
        Ok(self.roles().holds(&session.grants, session.trusted, self.now(), &privilege))
    }

    /// One answer per privilege, and their combination by `mode`.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn check_privileges(
        &self,
        caller: &Caller,
        session: &SessionRef,
        privileges: &[String],
        mode: CheckMode,
    ) -> Result<(bool, Vec<bool>), Error> {
        let max = self.inner.config.limits.max_names_per_request;
        if privileges.is_empty() || privileges.len() > max {
            return Err(InvalidInput::new("privileges", format!("name between 1 and {max} privileges")).into());
        }
        let book = self.roles();
        let mut names = Vec::with_capacity(privileges.len());
        let mut violations = Vec::new();
        for (i, p) in privileges.iter().enumerate() {
            match book.privilege(p, &format!("privileges[{i}]")) {
                Ok(name) => names.push(name),
                Err(v) => violations.push(v),
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let session = self.open_session(caller, session).await?;
        let now = self.now();
        let held: Vec<bool> = names.iter().map(|p| book.holds(&session.grants, session.trusted, now, p)).collect();
        let granted = match mode {
            CheckMode::Any => held.iter().any(|h| *h),
            CheckMode::All => held.iter().all(|h| *h),
        };
        Ok((granted, held))
    }

    /// Grants `privilege` until `duration` from now.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn promote(
        &self,
        caller: &Caller,
        session: &SessionRef,
        privilege: &str,
        duration: Duration,
    ) -> Result<Promotion, Error> {
        let privilege = self.privilege_name(privilege, "privilege")?;
        let max = self.inner.config.limits.max_promotion;
        if duration.is_zero() || duration > max {
            return Err(
                InvalidInput::new("duration", format!("must be positive and at most {}s", max.as_secs())).into()
            );
        }
        let promotion = Promotion { id: PromotionId::generate(), privilege, expires_at: self.now() + duration };
        let (_, promotion) = self
            .change_grants(caller, session, |grants| {
                grants.promotions.push(promotion.clone());
                Ok(promotion.clone())
            })
            .await?;
        Ok(promotion)
    }

    /// Ends a promotion early. An unknown (or already expired) id is
    /// NOT_FOUND.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn demote(&self, caller: &Caller, session: &SessionRef, promotion: &PromotionId) -> Result<(), Error> {
        self.change_grants(caller, session, |grants| {
            let before = grants.promotions.len();
            grants.promotions.retain(|p| p.id != *promotion);
            if grants.promotions.len() == before {
                return Err(Error::NotFound { what: "promotion", name: promotion.as_str().to_owned() });
            }
            Ok(())
        })
        .await?;
        Ok(())
    }
}
