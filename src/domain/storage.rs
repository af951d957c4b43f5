//! Per-session key/value storage: structured values (JSON's data model, the
//! same as `google.protobuf.Value`), a version bumped by every write, and the
//! limits that keep one session from filling the store.

use std::collections::BTreeMap;

use super::error::{Error, InvalidInput};

/// A session's storage: key → JSON value, ordered for stable answers.
pub type StorageMap = BTreeMap<String, serde_json::Value>;

/// Storage with the version a compare-and-set names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionedStorage {
    pub version: u64,
    pub values: StorageMap,
}

/// Bounds on one session's storage. All settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_keys: usize,
    pub max_total_bytes: usize,
}

impl Default for StorageLimits {
    fn default() -> Self {
        Self { max_key_bytes: 256, max_value_bytes: 64 * 1024, max_keys: 1_000, max_total_bytes: 1024 * 1024 }
    }
}

/// One change asked of the storage.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageChange {
    Put(StorageMap),
    Delete(Vec<String>),
    Clear,
}

/// Encoded size of a value, which is what the stores keep.
pub fn value_bytes(value: &serde_json::Value) -> usize {
    // Serializing a `serde_json::Value` cannot fail: its keys are strings.
    serde_json::to_vec(value).map(|v| v.len()).unwrap_or(usize::MAX)
}

impl StorageLimits {
    /// Checks a key's shape; `field` names it in the error.
    pub fn check_key(&self, key: &str, field: &str) -> Result<(), InvalidInput> {
        if key.is_empty() {
            return Err(InvalidInput::new(field, "key must not be empty"));
        }
        if key.len() > self.max_key_bytes {
            return Err(InvalidInput::new(field, format!("key is longer than {} bytes", self.max_key_bytes)));
        }
        if key.chars().any(char::is_control) {
            return Err(InvalidInput::new(field, "key must not contain control characters"));
        }
        Ok(())
    }

    /// Checks keys and per-value sizes of a whole map (a create request's or
    /// a put's), naming each offending entry as `field[key]`.
    pub fn check_entries(&self, values: &StorageMap, field: &str) -> Result<(), Error> {
        let mut violations = Vec::new();
        for (key, value) in values {
            let entry_field = format!("{field}[{key}]");
            if let Err(v) = self.check_key(key, &entry_field) {
                violations.push(v);
            } else if value_bytes(value) > self.max_value_bytes {
                violations.push(InvalidInput::new(
                    entry_field,
                    format!("value is larger than {} bytes", self.max_value_bytes),
                ));
            }
        }
        if violations.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(violations)) }
    }

    /// Checks the per-session totals of a storage after a change.
    pub fn check_totals(&self, values: &StorageMap) -> Result<(), Error> {
        if values.len() > self.max_keys {
            return Err(Error::QuotaExceeded {
                subject: "storage keys".into(),
                description: format!("a session may hold at most {} keys", self.max_keys),
            });
        }
        let total: usize = values.iter().map(|(k, v)| k.len() + value_bytes(v)).sum();
        if total > self.max_total_bytes {
            return Err(Error::QuotaExceeded {
                subject: "storage bytes".into(),
                description: format!("a session may hold at most {} bytes of storage", self.max_total_bytes),
            });
        }
        Ok(())
    }
}

impl StorageChange {
    /// The storage after this change.
    pub fn apply(&self, mut values: StorageMap) -> StorageMap {
        match self {
            StorageChange::Put(new) => values.extend(new.iter().map(|(k, v)| (k.clone(), v.clone()))),
            StorageChange::Delete(keys) => keys.iter().for_each(|k| {
                values.remove(k);
            }),
            StorageChange::Clear => values.clear(),
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_name_the_offending_key() {
        let limits = StorageLimits { max_key_bytes: 3, max_value_bytes: 4, ..StorageLimits::default() };
        let values = StorageMap::from([("long".into(), json!(1)), ("ok".into(), json!("12345"))]);
        let Err(Error::InvalidArgument(v)) = limits.check_entries(&values, "values") else {
            panic!("expected violations")
        };
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["values[long]", "values[ok]"]);
    }

    #[test]
    fn totals_are_quota_errors() {
        let limits = StorageLimits { max_keys: 1, ..StorageLimits::default() };
        let values = StorageMap::from([("a".into(), json!(1)), ("b".into(), json!(2))]);
        assert!(matches!(limits.check_totals(&values), Err(Error::QuotaExceeded { .. })));
    }

    #[test]
    fn changes_apply_in_order() {
        let start = StorageMap::from([("a".into(), json!(1))]);
        let put = StorageChange::Put(StorageMap::from([("b".into(), json!(2))])).apply(start);
        assert_eq!(put.len(), 2);
        assert_eq!(StorageChange::Delete(vec!["a".into()]).apply(put.clone()).len(), 1);
        assert!(StorageChange::Clear.apply(put).is_empty());
    }
}
