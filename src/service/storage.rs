//! Per-session storage: read, and change with optimistic concurrency.
//!
//! A change names the version it expects or not. With one, a concurrent
//! write makes it fail with the current version (the caller re-reads and
//! retries); without one, the service retries itself, so the change is
//! applied to whatever is current. Limits are checked on the result.

use crate::auth::Caller;
use crate::domain::{EncodedStorage, EventType, StorageChange, StorageMap, VersionedStorage};
use crate::service::Error;
use crate::store::StoreError;

use super::{Service, SessionRef};

/// Attempts of an unconditional change before answering `Contended`.
/// Within one process changes queue on the session's lock; only other
/// processes sharing the store can make an attempt fail.
const CAS_ATTEMPTS: usize = 64;

impl Service {
    /// All keys, or only `keys` (checked at the edge; missing ones are left
    /// out).
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn get_storage(
        &self,
        caller: &Caller,
        session: &SessionRef,
        keys: &[String],
    ) -> Result<VersionedStorage, Error> {
        let session = self.open_session(caller, session).await?;
        let mut storage = self.stores().storage.storage(&session.id).await?;
        if !keys.is_empty() {
            storage.values = keys
                .iter()
                .filter_map(|k| storage.values.get_key_value(k).map(|(k, v)| (k.clone(), v.clone())))
                .collect::<StorageMap>();
        }
        Ok(storage)
    }

    /// Applies `change` (its keys and values checked at the edge); answers
    /// the new version. A change that changes nothing (a delete of keys
    /// the storage does not hold, a clear of an empty storage) writes
    /// nothing, records no event and answers the current version.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn change_storage(
        &self,
        caller: &Caller,
        session: &SessionRef,
        change: StorageChange,
        expected_version: Option<u64>,
    ) -> Result<u64, Error> {
        let limits = self.inner.config.limits.storage;
        let session = self.open_session(caller, session).await?;
        let _serialised = self.inner.locks.lock(&session.id).await;
        for _ in 0..CAS_ATTEMPTS {
            let current = self.stores().storage.storage(&session.id).await?;
            if let Some(expected) = expected_version.filter(|e| *e != current.version) {
                tracing::debug!(session_id = %session.id, expected, current = current.version, "storage version conflict");
                return Err(Error::VersionConflict { current: current.version });
            }
            let values = change.apply(current.values.clone());
            if !matches!(change, StorageChange::Put(_)) && values == current.values {
                return Ok(current.version);
            }
            let values = EncodedStorage::encode(&values);
            limits.check_totals(&values)?;
            let event = self.event(&session, EventType::StorageChanged, None);
            match self.stores().storage.replace_storage(&session.id, current.version, values, event).await {
                Ok((version, event)) => {
                    self.publish(event);
                    return Ok(version);
                }
                Err(StoreError::Conflict { current }) if expected_version.is_some() => {
                    return Err(Error::VersionConflict { current });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(Error::Contended)
    }
}
