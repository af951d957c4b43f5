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
//!   - name: legacy
//!     tenant: acme
//!     role: service
//!     hash: $argon2id$v=19$m=19456,t=2,p=1$…  # `sessiond hash-key --argon2`
//!     max_concurrent_calls: 16  # optional: this key's own share
//!     max_streams: 8            # optional: its own limit of open streams
//!     allow: [change_privileges]  # optional: beyond the service role
//! ```
//!
//! A presented key is hashed and compared with every configured hash in
//! constant time. A salted, slow argon2id hash costs its verification once
//! per process and key: after the first success the entry keeps a digest
//! of the key keyed by a secret of this process, and later calls compare
//! against that ([`ApiKeys::authenticate`]). Without a keys file sessiond
//! runs open: every caller is an admin of the `default` tenant (allowed
//! only on loopback, see `Settings::check_authentication`).
//!
//! With mutual TLS, an entry may name a client certificate instead of a
//! key, by the SHA-256 of its DER encoding (`cert_sha256: <hex>`, e.g.
//! `openssl x509 -in client.crt -outform der | sha256sum`): a caller
//! presenting that certificate, signed by the configured client CA, is
//! that entry's tenant and role.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq as _};

use crate::domain::TenantId;

const HASH_PREFIX: &str = "sha256:";
const ARGON2ID_PREFIX: &str = "$argon2id$";
const KEY_PREFIX: &str = "sdk_";

/// The least a key must carry, in bits, for `sessiond hash-key` to hash it.
pub const MIN_KEY_BITS: usize = 256;

/// Presented keys remembered as unknown, so that repeating one does not
/// repeat argon2 verifications.
const REJECTED_CAPACITY: u64 = 10_000;

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

/// What a `service` key may do only when its entry allows it (`allow:` in
/// the keys file); an `admin` key may do all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Create trusted sessions, which hold every privilege.
    TrustedSessions,
    /// Change the privileges of existing sessions: SetPrivileges,
    /// ClearPrivileges, Promote, Demote.
    ChangePrivileges,
    /// Name sessions by their public `session_id`, not only by the secret
    /// token: calls on one session, RevokeSessions' `session_ids` and
    /// WatchSessions' `session_id`.
    SessionIds,
}

impl Permission {
    /// The name the keys file and error details use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TrustedSessions => "trusted_sessions",
            Self::ChangePrivileges => "change_privileges",
            Self::SessionIds => "session_ids",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The configured key's name, for logs.
    pub name: String,
    pub tenant: TenantId,
    pub role: Role,
    /// The [`Permission`]s its entry allows, one bit each.
    permissions: u8,
    /// The entry's position in the keys file (0 for [`Caller::open`]): the
    /// index of its counters in `grpc::fairness`.
    pub slot: usize,
}

impl Caller {
    /// The caller of an open server (no keys configured).
    pub fn open() -> Self {
        Self { name: "anonymous".into(), tenant: TenantId::default(), role: Role::Admin, permissions: 0, slot: 0 }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may do what `permission` guards: an admin always,
    /// a service key when its entry allows it.
    pub fn may(&self, permission: Permission) -> bool {
        self.is_admin() || self.permissions & permission.bit() != 0
    }

    /// `Ok` when the caller [`may`](Self::may) do it; otherwise the error
    /// naming the permission it lacks.
    pub fn require(&self, permission: Permission) -> Result<(), crate::service::Error> {
        if self.may(permission) { Ok(()) } else { Err(crate::service::Error::PermissionRequired(permission.as_str())) }
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
    /// `sha256:<hex>` of an API key, or its argon2id PHC string.
    #[serde(default)]
    hash: Option<String>,
    /// `<hex>` SHA-256 of a client certificate's DER encoding.
    #[serde(default)]
    cert_sha256: Option<String>,
    /// This key's own limit of calls in progress, instead of
    /// `--max-concurrent-calls-per-key`.
    #[serde(default)]
    max_concurrent_calls: Option<usize>,
    /// This key's own limit of open streams (WatchSessions, FollowLogs,
    /// Subscribe), instead of `--max-streams-per-key`.
    #[serde(default)]
    max_streams: Option<usize>,
    /// What a service key may do beyond its role (an admin key may all).
    #[serde(default)]
    allow: Vec<Permission>,
}

/// What an entry recognises its caller by.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Credential {
    Key,
    Certificate,
}

/// How an entry's key is stored.
#[derive(Clone)]
enum Stored {
    /// SHA-256 of the key (or of a certificate's DER encoding).
    Sha256([u8; 32]),
    /// A salted argon2id hash, and once a key has verified against it, that
    /// key's digest keyed by the process secret ([`ApiKeys::keyed`]).
    Argon2 { hash: Box<PasswordHash>, verified: Arc<Mutex<Option<[u8; 32]>>> },
}

#[derive(Clone)]
struct Key {
    /// Shared with every call it authenticates: a call holds its caller
    /// without copying it.
    caller: Arc<Caller>,
    credential: Credential,
    stored: Stored,
    limits: KeyLimits,
}

/// An entry's own limits, where it sets them; the flags apply otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyLimits {
    /// Calls in progress at once (`max_concurrent_calls`).
    pub max_concurrent_calls: Option<usize>,
    /// Server streams open at once (`max_streams`).
    pub max_streams: Option<usize>,
}

/// The configured keys. Does not print its hashes, nor its cache.
#[derive(Clone)]
pub struct ApiKeys {
    keys: Vec<Key>,
    /// Random, per process, never stored or logged: keys the digests that
    /// stand in for verified argon2 hashes and for unknown keys.
    secret: [u8; 32],
    /// Keyed digests of presented keys that matched no entry (bounded).
    rejected: moka::sync::Cache<[u8; 32], ()>,
    /// argon2 verifications run, for tests and metrics.
    slow_verifications: Arc<AtomicU64>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither hashes nor the secret nor cached digests.
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

/// A salted argon2id hash of a key (argon2's default cost: 19 MiB, two
/// passes), as a PHC string: `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
/// For keys that may be weaker than a generated one, such as migrated ones.
pub fn hash_key_argon2(key: &str) -> anyhow::Result<String> {
    let hash =
        Argon2::default().hash_password(key.as_bytes()).map_err(|err| anyhow::anyhow!("argon2 failed: {err}"))?;
    Ok(hash.to_string())
}

/// Why `sessiond hash-key` refuses a key.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the key carries at most {bits} bits; at least {MIN_KEY_BITS} are needed: 64 hex digits, or 43 characters of \
     base64 (A-Z a-z 0-9 + / or - _), after an optional sdk_ prefix (`sessiond hash-key --generate` makes one; \
     --allow-weak hashes an existing key anyway)"
)]
pub struct WeakKey {
    /// The most the key can carry by its length and alphabet.
    pub bits: usize,
}

/// Whether a key can carry 256 bits (32 random bytes), judged by its length
/// and the smallest alphabet it fits: after an optional `sdk_` prefix and
/// any trailing `=` padding, 4 bits per character when all are hex digits,
/// 6 when all are base64 or base64url characters. A key with any other
/// character counts as weak. Length is what can be checked: a long key
/// that is not random is still weak.
pub fn check_key_strength(key: &str) -> Result<(), WeakKey> {
    let body = key.strip_prefix(KEY_PREFIX).unwrap_or(key).trim_end_matches('=');
    let per_char = if body.bytes().all(|b| b.is_ascii_hexdigit()) {
        4
    } else if body.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/-_".contains(&b)) {
        6
    } else {
        0
    };
    let bits = body.len() * per_char;
    if bits >= MIN_KEY_BITS { Ok(()) } else { Err(WeakKey { bits }) }
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
            let (credential, stored) = match (&def.hash, &def.cert_sha256) {
                (Some(hash), None) if hash.starts_with(ARGON2ID_PREFIX) => (
                    Credential::Key,
                    PasswordHash::new(hash)
                        .ok()
                        .map(|hash| Stored::Argon2 { hash: Box::new(hash), verified: Arc::default() })
                        .ok_or_else(|| {
                            invalid(format!(
                                "key {}: hash is not an argon2id PHC string from `sessiond hash-key --argon2`",
                                def.name
                            ))
                        })?,
                ),
                (Some(hash), None) => (
                    Credential::Key,
                    hash.strip_prefix(HASH_PREFIX).and_then(digest).map(Stored::Sha256).ok_or_else(|| {
                        invalid(format!(
                            "key {}: hash must be sha256:<64 hex digits> or $argon2id$… from `sessiond hash-key`",
                            def.name
                        ))
                    })?,
                ),
                (None, Some(cert)) => (
                    Credential::Certificate,
                    digest(&cert.replace(':', "").to_lowercase())
                        .map(Stored::Sha256)
                        .ok_or_else(|| invalid(format!("key {}: cert_sha256 must be 64 hex digits", def.name)))?,
                ),
                _ => return Err(invalid(format!("key {}: give exactly one of hash and cert_sha256", def.name))),
            };
            if let Stored::Sha256(new) = &stored
                && keys.iter().any(|k: &Key| matches!(&k.stored, Stored::Sha256(old) if old == new))
            {
                return Err(invalid(format!("key {}: the same key is configured twice", def.name)));
            }
            if def.max_concurrent_calls == Some(0) {
                return Err(invalid(format!("key {}: max_concurrent_calls must be positive", def.name)));
            }
            if def.max_streams == Some(0) {
                return Err(invalid(format!("key {}: max_streams must be positive", def.name)));
            }
            let permissions = def.allow.iter().fold(0, |bits, permission| bits | permission.bit());
            let caller = Caller { name: def.name, tenant, role: def.role, permissions, slot: keys.len() };
            let limits = KeyLimits { max_concurrent_calls: def.max_concurrent_calls, max_streams: def.max_streams };
            keys.push(Key { caller: Arc::new(caller), credential, stored, limits });
        }
        if keys.is_empty() {
            return Err(invalid("no keys: omit the file to run without authentication".into()));
        }
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        Ok(Self {
            keys,
            secret,
            rejected: moka::sync::Cache::new(REJECTED_CAPACITY),
            slow_verifications: Arc::default(),
        })
    }

    /// The caller a presented key belongs to.
    ///
    /// First every `sha256:` entry, and every argon2 entry a key has
    /// already verified against, is compared in constant time, all of
    /// them, so timing tells nothing about which matched. Only when none
    /// matches is the key verified with argon2 against the entries no key
    /// has verified against yet; a success is remembered in the entry as
    /// the key's digest keyed by the process secret (one per entry, so the
    /// memory is bounded by the file), a failure in a bounded set of
    /// unknown keys. So each argon2 entry costs one slow verification per
    /// process, and a known key costs SHA-256 and compares on every call.
    pub fn authenticate(&self, presented: &str) -> Option<Arc<Caller>> {
        // Each digest is computed once, and only when some entry compares
        // against it: a file of SHA-256 entries costs one digest per call.
        let mut plain: Option<[u8; 32]> = None;
        let mut keyed: Option<[u8; 32]> = None;
        let mut found = None;
        for key in self.keys.iter().filter(|k| k.credential == Credential::Key) {
            let matched = match &key.stored {
                Stored::Sha256(digest) => {
                    digests_equal(digest, plain.get_or_insert_with(|| Sha256::digest(presented.as_bytes()).into()))
                }
                Stored::Argon2 { verified, .. } => match *verified.lock().unwrap_or_else(|e| e.into_inner()) {
                    Some(digest) => {
                        digests_equal(&digest, keyed.get_or_insert_with(|| self.keyed(presented.as_bytes())))
                    }
                    None => Choice::from(0),
                },
            };
            if bool::from(matched) {
                found = Some(key.caller.clone());
            }
        }
        if found.is_some() {
            return found;
        }
        let keyed = keyed.unwrap_or_else(|| self.keyed(presented.as_bytes()));
        if self.rejected.contains_key(&keyed) {
            return None;
        }
        for key in &self.keys {
            let Stored::Argon2 { hash, verified } = &key.stored else { continue };
            if verified.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                // Another key verified against it: this one cannot.
                continue;
            }
            self.slow_verifications.fetch_add(1, Ordering::Relaxed);
            if Argon2::default().verify_password(presented.as_bytes(), hash.as_ref()).is_ok() {
                *verified.lock().unwrap_or_else(|e| e.into_inner()) = Some(keyed);
                return Some(key.caller.clone());
            }
        }
        self.rejected.insert(keyed, ());
        None
    }

    /// Every entry's caller, in slot order, with the limits the entry sets.
    pub fn entries(&self) -> impl Iterator<Item = (&Caller, KeyLimits)> {
        self.keys.iter().map(|key| (key.caller.as_ref(), key.limits))
    }

    /// How many argon2 verifications this set of keys has run.
    pub fn slow_verifications(&self) -> u64 {
        self.slow_verifications.load(Ordering::Relaxed)
    }

    /// A presented key's digest keyed by the process secret: what stands in
    /// for it in memory, useless outside this process.
    fn keyed(&self, presented: &[u8]) -> [u8; 32] {
        Sha256::new().chain_update(self.secret).chain_update(presented).finalize().into()
    }

    /// The caller a client certificate (DER, already verified against the
    /// client CA by TLS) belongs to.
    pub fn authenticate_certificate(&self, der: &[u8]) -> Option<Arc<Caller>> {
        let presented: [u8; 32] = Sha256::digest(der).into();
        let mut found = None;
        for key in self.keys.iter().filter(|k| k.credential == Credential::Certificate) {
            if let Stored::Sha256(digest) = &key.stored
                && bool::from(digests_equal(digest, &presented))
            {
                found = Some(key.caller.clone());
            }
        }
        found
    }
}

/// Whether two digests are equal, in time that does not depend on where
/// they differ: their words XORed together, the differences ORed, one
/// comparison at the end (a byte-wise `ct_eq` takes several instructions
/// per byte, on every call with a key).
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> Choice {
    let word = |d: &[u8; 32], i: usize| u64::from_ne_bytes(d[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let differences = (0..4).fold(0u64, |acc, i| acc | (word(a, i) ^ word(b, i)));
    differences.ct_eq(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_equal_only_when_every_byte_is() {
        let digest: [u8; 32] = Sha256::digest(b"key").into();
        assert!(bool::from(digests_equal(&digest, &digest.clone())));
        for i in 0..32 {
            for bit in 0..8 {
                let mut other = digest;
                other[i] ^= 1 << bit;
                assert!(!bool::from(digests_equal(&digest, &other)), "byte {i}, bit {bit}");
            }
        }
    }

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

    /// A cheap argon2id hash (8 KiB, one pass), so tests stay fast; the
    /// verification reads its cost from the PHC string.
    fn cheap_argon2(key: &str) -> String {
        let params = argon2::Params::new(8, 1, 1, None).expect("valid parameters");
        let argon2 = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        argon2.hash_password(key.as_bytes()).expect("hashed").to_string()
    }

    #[test]
    fn an_argon2_entry_authenticates_its_key_and_refuses_others() {
        let (key, _) = generate_key();
        let hash = cheap_argon2(&key);
        assert!(hash.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{hash}");
        let keys =
            ApiKeys::parse(&format!("keys: [{{name: legacy, tenant: acme, role: admin, hash: '{hash}'}}]")).unwrap();
        assert!(keys.authenticate("sdk_wrong").is_none());
        let caller = keys.authenticate(&key).expect("the key verifies");
        assert_eq!((caller.name.as_str(), caller.tenant.as_str(), caller.role), ("legacy", "acme", Role::Admin));
        assert!(keys.authenticate("sdk_wrong").is_none(), "still refused once the entry is verified");
        assert!(keys.authenticate(&format!("{key}x")).is_none());
    }

    #[test]
    fn an_argon2_hash_is_verified_once_then_compared() {
        let (key, _) = generate_key();
        let (other, other_hash) = generate_key();
        let keys = ApiKeys::parse(&format!(
            "keys:\n  - {{name: a, tenant: t, role: admin, hash: '{}'}}\n  - {{name: b, tenant: t, role: service, hash: '{other_hash}'}}",
            cheap_argon2(&key)
        ))
        .unwrap();
        assert!(keys.authenticate(&key).is_some());
        assert_eq!(keys.slow_verifications(), 1);
        for _ in 0..3 {
            assert!(keys.authenticate(&key).is_some());
        }
        assert_eq!(keys.slow_verifications(), 1, "later calls compare against the cached digest");
        assert!(keys.authenticate(&other).is_some());
        assert!(keys.authenticate("sdk_unknown").is_none());
        assert_eq!(keys.slow_verifications(), 1, "no argon2 for a sha256 key, nor against a verified entry");
    }

    #[test]
    fn an_unknown_key_is_verified_with_argon2_once() {
        let keys = ApiKeys::parse(&format!(
            "keys: [{{name: a, tenant: t, role: admin, hash: '{}'}}]",
            cheap_argon2(&generate_key().0)
        ))
        .unwrap();
        assert!(keys.authenticate("sdk_unknown").is_none());
        assert!(keys.authenticate("sdk_unknown").is_none());
        assert_eq!(keys.slow_verifications(), 1, "a repeated unknown key is remembered");
        assert!(keys.authenticate("sdk_other").is_none());
        assert_eq!(keys.slow_verifications(), 2);
    }

    #[test]
    fn malformed_argon2_hashes_are_refused() {
        assert!(ApiKeys::parse("keys: [{name: a, tenant: t, role: admin, hash: '$argon2id$nope'}]").is_err());
    }

    #[test]
    fn weak_keys_are_told_apart_from_generated_ones() {
        assert_eq!(check_key_strength(&generate_key().0), Ok(()));
        assert_eq!(check_key_strength(&"ab".repeat(32)), Ok(()), "64 hex digits");
        assert_eq!(check_key_strength(&"Zz".repeat(22)), Ok(()), "44 base64 characters");
        assert_eq!(check_key_strength(&"ab".repeat(31)), Err(WeakKey { bits: 248 }));
        assert_eq!(check_key_strength(&format!("sdk_{}", "x".repeat(42))), Err(WeakKey { bits: 252 }));
        assert_eq!(check_key_strength("correct horse battery staple correct horse battery"), Err(WeakKey { bits: 0 }));
        assert_eq!(check_key_strength("hunter2"), Err(WeakKey { bits: 42 }));
    }

    #[test]
    fn debug_output_shows_no_hashes() {
        let (_, hash) = generate_key();
        let keys = ApiKeys::parse(&format!("keys: [{{name: a, tenant: t, role: admin, hash: \"{hash}\"}}]")).unwrap();
        assert!(!format!("{keys:?}").contains(&hash[7..]));
    }
}
