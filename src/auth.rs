//! Who is calling: API keys, each bound to a tenant and a role.
//!
//! Services authenticate with `authorization: Bearer <key>` metadata. Keys
//! are configured only as hashes (`sessiond hash-key` prints one), in a
//! YAML or JSON file:
//!
//! ```yaml
//! keys:
//!   - name: checkout            # for logs; never the key itself
//!     tenant: acme
//!     role: service             # or admin
//!     hash: sha256:9f86d08…     # from `sessiond hash-key`
//! ```
//!
//! A presented key is hashed and compared with every configured hash in
//! constant time. Without a keys file sessiond runs open: every caller is
//! an admin of the `default` tenant (meant for local development).
//!
//! With mutual TLS, an entry may name a client certificate instead of a
//! key, by the SHA-256 of its DER encoding (`cert_sha256: <hex>`, e.g.
//! `openssl x509 -in client.crt -outform der | sha256sum`): a caller
//! presenting that certificate, signed by the configured client CA, is
//! that entry's tenant and role.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::domain::TenantId;

const HASH_PREFIX: &str = "sha256:";
const KEY_PREFIX: &str = "sdk_";

/// What a caller may do beyond its own users' sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sessions of its tenant, named one at a time or by user.
    Service,
    /// Also lists and revokes across users, reads logs and watches the
    /// whole tenant.
    Admin,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The configured key's name, for logs.
    pub name: String,
    pub tenant: TenantId,
    pub role: Role,
}

impl Caller {
    /// The caller of an open server (no keys configured).
    pub fn open() -> Self {
        Self { name: "anonymous".into(), tenant: TenantId::default(), role: Role::Admin }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyDef {
    name: String,
    tenant: String,
    role: Role,
    /// `sha256:<hex>` of an API key.
    #[serde(default)]
    hash: Option<String>,
    /// `<hex>` SHA-256 of a client certificate's DER encoding.
    #[serde(default)]
    cert_sha256: Option<String>,
}

/// What an entry recognises its caller by.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Credential {
    Key,
    Certificate,
}

#[derive(Clone)]
struct Key {
    caller: Caller,
    credential: Credential,
    hash: [u8; 32],
}

/// The configured keys. Does not print its hashes.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<Key>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys").field("keys", &self.keys.len()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    #[error("cannot read API keys file {path}")]
    Read { path: String, source: std::io::Error },
    #[error("API keys file does not parse")]
    Parse(#[from] serde_yaml::Error),
    #[error("API keys file is invalid: {0}")]
    Invalid(String),
}

/// A new random key (256 bits) and its hash, for `sessiond hash-key
/// --generate`.
pub fn generate_key() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_key(&key);
    (key, hash)
}

/// The configured form of a key: `sha256:` and the hex digest. Keys are
/// random and long, so a fast hash is enough: there is nothing to guess.
pub fn hash_key(key: &str) -> String {
    format!("{HASH_PREFIX}{}", hex::encode(Sha256::digest(key.as_bytes())))
}

impl ApiKeys {
    pub fn load(path: &Path) -> Result<Self, KeysFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| KeysFileError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, KeysFileError> {
        let file: KeysFile = serde_yaml::from_str(text)?;
        let invalid = |m: String| KeysFileError::Invalid(m);
        let mut keys = Vec::with_capacity(file.keys.len());
        for def in file.keys {
            let tenant = TenantId::parse(&def.tenant, "tenant")
                .map_err(|e| invalid(format!("key {}: tenant {}", def.name, e.description)))?;
            let digest = |hex_digits: &str| hex::decode(hex_digits).ok().and_then(|d| <[u8; 32]>::try_from(d).ok());
            let (credential, digest) = match (&def.hash, &def.cert_sha256) {
                (Some(hash), None) => (
                    Credential::Key,
                    hash.strip_prefix(HASH_PREFIX).and_then(digest).ok_or_else(|| {
                        invalid(format!(
                            "key {}: hash must be sha256:<64 hex digits> from `sessiond hash-key`",
                            def.name
                        ))
                    })?,
                ),
                (None, Some(cert)) => (
                    Credential::Certificate,
                    digest(&cert.replace(':', "").to_lowercase())
                        .ok_or_else(|| invalid(format!("key {}: cert_sha256 must be 64 hex digits", def.name)))?,
                ),
                _ => return Err(invalid(format!("key {}: give exactly one of hash and cert_sha256", def.name))),
            };
            if keys.iter().any(|k: &Key| k.hash == digest) {
                return Err(invalid(format!("key {}: the same key is configured twice", def.name)));
            }
            keys.push(Key { caller: Caller { name: def.name, tenant, role: def.role }, credential, hash: digest });
        }
        if keys.is_empty() {
            return Err(invalid("no keys: omit the file to run without authentication".into()));
        }
        Ok(Self { keys })
    }

    /// The caller a presented key belongs to. Compares against every key,
    /// in constant time each, so timing tells nothing about which matched.
    pub fn authenticate(&self, presented: &str) -> Option<Caller> {
        self.find(Credential::Key, Sha256::digest(presented.as_bytes()).into())
    }

    /// The caller a client certificate (DER, already verified against the
    /// client CA by TLS) belongs to.
    pub fn authenticate_certificate(&self, der: &[u8]) -> Option<Caller> {
        self.find(Credential::Certificate, Sha256::digest(der).into())
    }

    fn find(&self, credential: Credential, digest: [u8; 32]) -> Option<Caller> {
        let mut found = None;
        for key in self.keys.iter().filter(|k| k.credential == credential) {
            if bool::from(key.hash.ct_eq(&digest)) {
                found = Some(key.caller.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_authenticates_as_its_entry() {
        let (key, hash) = generate_key();
        let keys =
            ApiKeys::parse(&format!("keys: [{{name: checkout, tenant: acme, role: service, hash: \"{hash}\"}}]"))
                .unwrap();
        let caller = keys.authenticate(&key).expect("the key is known");
        assert_eq!(caller.tenant.as_str(), "acme");
        assert_eq!(caller.role, Role::Service);
        assert!(keys.authenticate("sdk_wrong").is_none());
    }

    #[test]
    fn malformed_files_are_refused() {
        assert!(ApiKeys::parse("keys: []").is_err());
        assert!(ApiKeys::parse("keys: [{name: a, tenant: t, role: service, hash: md5:00}]").is_err());
        assert!(ApiKeys::parse("keys: [{name: a, tenant: t, role: root, hash: sha256:00}]").is_err());
    }

    #[test]
    fn debug_output_shows_no_hashes() {
        let (_, hash) = generate_key();
        let keys = ApiKeys::parse(&format!("keys: [{{name: a, tenant: t, role: admin, hash: \"{hash}\"}}]")).unwrap();
        assert!(!format!("{keys:?}").contains(&hash[7..]));
    }
}
