//! Per-session key/value storage: structured values (JSON's data model, the
//! same as `google.protobuf.Value`), a version bumped by every write, and the
//! limits that keep one session from filling the store.

use std::collections::BTreeMap;

use super::invalid::{InvalidInput, QuotaExceeded, Violations};

/// A session's storage: key → JSON value, ordered for stable answers.
pub type StorageMap = BTreeMap<String, serde_json::Value>;

/// Storage with the version a compare-and-set names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionedStorage {
    pub version: u64,
    pub values: StorageMap,
}

/// A storage map encoded once, as the JSON text the stores keep: the
/// per-session limits are checked on it and the store writes it as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedStorage {
    json: String,
    keys: usize,
    /// Every key's bytes plus every value's encoded bytes.
    bytes: usize,
}

impl EncodedStorage {
    /// Encodes `values` (a `serde_json::Value` always encodes: its keys are
    /// strings).
    pub fn encode(values: &StorageMap) -> Self {
        let json = serde_json::to_string(values).unwrap_or_else(|_| "{}".to_owned());
        // The object's text is its braces, a comma between entries, and per
        // entry the key, quoted and escaped, a colon and the value: take
        // away all but the keys' and values' own bytes.
        let framing = 2 + values.len().saturating_sub(1);
        let keys: usize = values.keys().map(|key| escaped_len(key) - key.len() + 3).sum();
        let bytes = json.len().saturating_sub(framing + keys);
        Self { json, keys: values.len(), bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    pub fn into_json(self) -> String {
        self.json
    }
}

/// The length of `key` as a JSON string's contents (escapes included).
fn escaped_len(key: &str) -> usize {
    key.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum()
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
    /// Checks a key's shape; `field` names it in the error. The key itself
    /// is never echoed: an oversized one is told by its length.
    pub fn check_key(&self, key: &str, field: &str) -> Result<(), InvalidInput> {
        if key.is_empty() {
            return Err(InvalidInput::new(field, "key must not be empty"));
        }
        if key.len() > self.max_key_bytes {
            return Err(InvalidInput::new(
                field,
                format!("key of {} bytes is longer than the limit of {} bytes", key.len(), self.max_key_bytes),
            ));
        }
        if key.contains('\0') {
            return Err(InvalidInput::new(field, "key must not contain NUL characters"));
        }
        if key.chars().any(char::is_control) {
            return Err(InvalidInput::new(field, "key must not contain control characters"));
        }
        Ok(())
    }

    /// Checks a list of keys (GetStorage's, DeleteStorage's): at most
    /// `max_keys`, each named `field[i]`.
    pub fn check_keys(&self, keys: &[String], field: &str, violations: &mut Violations) {
        if !violations.count(keys.len(), field, self.max_keys) {
            return;
        }
        for (i, key) in keys.iter().enumerate() {
            violations.check(self.check_key(key, &format!("{field}[{i}]")));
        }
    }

    /// Checks a map's key (at most `max_keys` of them) before its value is
    /// read, answering the field its entry is named by: `field[key]` for a
    /// valid key; `field` itself for an invalid one, never echoed.
    pub fn entry_field(&self, key: &str, field: &str, violations: &mut Violations) -> Option<String> {
        violations.check(self.check_key(key, field)).map(|()| format!("{field}[{key}]"))
    }

    /// Checks a value's encoded size, for the entry named `entry_field`.
    pub fn check_value(&self, value: &serde_json::Value, entry_field: &str, violations: &mut Violations) {
        if value_bytes(value) > self.max_value_bytes {
            violations
                .push(InvalidInput::new(entry_field, format!("value is larger than {} bytes", self.max_value_bytes)));
        }
    }

    /// Checks the per-session totals of a storage after a change.
    pub fn check_totals(&self, values: &EncodedStorage) -> Result<(), QuotaExceeded> {
        if values.keys > self.max_keys {
            return Err(QuotaExceeded {
                subject: "storage keys".into(),
                description: format!("a session may hold at most {} keys", self.max_keys),
            });
        }
        if values.bytes > self.max_total_bytes {
            return Err(QuotaExceeded {
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
    use crate::domain::InvalidRequest;
    use serde_json::json;

    #[test]
    fn an_encoding_counts_the_bytes_of_its_keys_and_encoded_values() {
        let values: StorageMap = [
            ("plain", json!(1)),
            ("quote\"back\\slash", json!({"nested": [true, null, "é\n"]})),
            ("line\nfeed\u{1}é", json!("")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let encoded = EncodedStorage::encode(&values);
        let expected: usize = values.iter().map(|(k, v)| k.len() + value_bytes(v)).sum();
        assert_eq!(encoded.bytes, expected);
        assert_eq!(serde_json::from_str::<StorageMap>(encoded.json()).expect("valid JSON"), values);
        assert_eq!(EncodedStorage::encode(&StorageMap::new()).bytes, 0);
        assert!(EncodedStorage::encode(&StorageMap::new()).is_empty());
    }

    #[test]
    fn an_oversized_key_is_told_by_its_length_never_echoed() {
        let limits = StorageLimits { max_key_bytes: 3, ..StorageLimits::default() };
        let mut violations = Violations::default();
        assert_eq!(limits.entry_field("secretkey", "values", &mut violations), None);
        assert_eq!(limits.entry_field("ok", "values", &mut violations).as_deref(), Some("values[ok]"));
        let Err(InvalidRequest(found)) = violations.finish(Some(())) else { panic!("a violation") };
        assert_eq!(found[0].field, "values");
        assert!(!found[0].description.contains("secret"), "{:?}", found[0]);
        assert!(found[0].description.contains("9 bytes"), "{:?}", found[0]);
    }

    #[test]
    fn totals_are_quota_errors() {
        let limits = StorageLimits { max_keys: 1, ..StorageLimits::default() };
        let values = StorageMap::from([("a".into(), json!(1)), ("b".into(), json!(2))]);
        assert!(matches!(limits.check_totals(&EncodedStorage::encode(&values)), Err(QuotaExceeded { .. })));
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
