//! Idempotency keys: the `request_id` a client may put on CreateSession,
//! Log and each StreamLog message so that a retry is answered what the
//! first call was answered instead of being applied twice.
//!
//! A [`RequestId`] is parsed once at the edge and never stored or printed.
//! What a store keeps of it is derived with SHA-256, each derivation
//! prefixed by its own label and every part length-prefixed so that no two
//! inputs run together:
//!
//! - the record's key, [`RequestKey`]: `SHA-256("sessiond/lookup" ‖ scope
//!   ‖ tenant [‖ session] ‖ request id)`, scoped to the tenant for creates
//!   and to the session for logs;
//! - for creates, the token sealed with a one-time pad of the token's
//!   length, `SHA-256("sessiond/token" ‖ tenant ‖ request id ‖ block)` for
//!   block 0, 1, …: opening it takes the request id, which the store never
//!   sees, so a reader of the database cannot recover a token from it;
//! - a [`RequestDigest`] of the request itself, so that a retry carrying
//!   the same key with another request is recognised and refused.

use std::fmt;

use sha2::{Digest as _, Sha256};

use super::ids::{SessionId, TenantId, Token};
use super::invalid::InvalidInput;

/// Longest request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// A client-chosen idempotency key: 1 to [`MAX_REQUEST_ID_BYTES`] bytes of
/// printable ASCII (space to `~`). It keys records that hold secrets (the
/// token of a create), so it must be unguessable: a random UUID. It does
/// not print.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestId(String);

/// What a store finds an idempotency record by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey(pub [u8; 32]);

/// SHA-256 of a request's contents, to tell a retry from another request
/// that reuses its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestDigest(pub [u8; 32]);

impl RequestId {
    /// Parses a non-empty request id; an empty one is no request id.
    pub fn parse_optional(value: String, field: &str) -> Result<Option<Self>, InvalidInput> {
        if value.is_empty() {
            return Ok(None);
        }
        if value.len() > MAX_REQUEST_ID_BYTES || !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err(InvalidInput::new(
                field,
                format!("must be 1 to {MAX_REQUEST_ID_BYTES} printable ASCII characters, e.g. a random UUID"),
            ));
        }
        Ok(Some(Self(value)))
    }

    /// The key of a create's record: unique per tenant.
    pub fn create_key(&self, tenant: &TenantId) -> RequestKey {
        let mut hash = labelled("sessiond/lookup");
        part(&mut hash, b"create");
        part(&mut hash, tenant.as_str().as_bytes());
        part(&mut hash, self.0.as_bytes());
        RequestKey(hash.finalize().into())
    }

    /// The key of a log append's record: unique per tenant and session.
    pub fn log_key(&self, tenant: &TenantId, session: &SessionId) -> RequestKey {
        let mut hash = labelled("sessiond/lookup");
        part(&mut hash, b"log");
        part(&mut hash, tenant.as_str().as_bytes());
        part(&mut hash, session.as_str().as_bytes());
        part(&mut hash, self.0.as_bytes());
        RequestKey(hash.finalize().into())
    }

    /// `token` enciphered for the record of a create in `tenant`.
    pub fn seal(&self, tenant: &TenantId, token: &Token) -> Vec<u8> {
        self.xor_pad(tenant, token.expose().as_bytes())
    }

    /// The token `sealed` holds; `None` when it is not one (it was sealed
    /// under another id or tenant, or damaged).
    pub fn open(&self, tenant: &TenantId, sealed: &[u8]) -> Option<Token> {
        let plain = String::from_utf8(self.xor_pad(tenant, sealed)).ok()?;
        Token::parse(&plain, "token").ok()
    }

    /// `bytes` XOR the pad of this id in `tenant`, as long as `bytes`.
    fn xor_pad(&self, tenant: &TenantId, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        for (block, chunk) in bytes.chunks(32).enumerate() {
            let mut hash = labelled("sessiond/token");
            part(&mut hash, tenant.as_str().as_bytes());
            part(&mut hash, self.0.as_bytes());
            hash.update((block as u64).to_be_bytes());
            let pad: [u8; 32] = hash.finalize().into();
            out.extend(chunk.iter().zip(pad).map(|(b, p)| b ^ p));
        }
        out
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestId(<redacted>)")
    }
}

fn labelled(label: &str) -> Sha256 {
    let mut hash = Sha256::new();
    part(&mut hash, label.as_bytes());
    hash
}

/// Adds `bytes` with its length first, so that parts cannot run together.
fn part(hash: &mut Sha256, bytes: &[u8]) {
    hash.update((bytes.len() as u64).to_be_bytes());
    hash.update(bytes);
}

/// Builds a [`RequestDigest`] from a request's fields, each added with its
/// length so that different requests never feed the same bytes.
pub struct Digester(Sha256);

impl Digester {
    /// A digest of a request to `call` (its method's name).
    pub fn new(call: &str) -> Self {
        Self(labelled(call))
    }

    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        part(&mut self.0, bytes);
        self
    }

    pub fn text(&mut self, text: &str) -> &mut Self {
        self.bytes(text.as_bytes())
    }

    /// An optional text: absent differs from empty.
    pub fn optional(&mut self, text: Option<&str>) -> &mut Self {
        match text {
            None => self.bytes(b"\0absent"),
            Some(text) => self.bytes(b"\0present").text(text),
        }
    }

    pub fn number(&mut self, n: i64) -> &mut Self {
        self.bytes(&n.to_be_bytes())
    }

    pub fn finish(&mut self) -> RequestDigest {
        RequestDigest(std::mem::take(&mut self.0).finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: &str) -> RequestId {
        RequestId::parse_optional(value.to_owned(), "request_id").expect("valid").expect("not empty")
    }

    #[test]
    fn request_ids_are_one_to_128_printable_ascii_bytes() {
        assert!(RequestId::parse_optional(String::new(), "request_id").expect("empty is none").is_none());
        id("7f1c9e0a-3b52-4d8e-9a51-0c2f6b1d4e77");
        id(&"x".repeat(MAX_REQUEST_ID_BYTES));
        for bad in ["x".repeat(MAX_REQUEST_ID_BYTES + 1), "tab\there".into(), "é".into(), "nul\0".into()] {
            let err = RequestId::parse_optional(bad, "entries_request").expect_err("refused");
            assert_eq!(err.field, "entries_request");
        }
    }

    #[test]
    fn keys_are_scoped_by_tenant_session_and_call() {
        let (acme, other) = (TenantId::default(), TenantId::parse("other", "tenant").expect("valid"));
        let session = SessionId::generate();
        let key = id("k1");
        assert_eq!(key.create_key(&acme), id("k1").create_key(&acme));
        assert_ne!(key.create_key(&acme), key.create_key(&other));
        assert_ne!(key.create_key(&acme), key.log_key(&acme, &session));
        assert_ne!(key.log_key(&acme, &session), key.log_key(&acme, &SessionId::generate()));
        assert_ne!(key.create_key(&acme), id("k2").create_key(&acme));
    }

    #[test]
    fn a_sealed_token_opens_only_with_its_request_id_and_tenant() {
        let tenant = TenantId::default();
        let token = Token::generate();
        let sealed = id("k1").seal(&tenant, &token);
        assert_eq!(sealed.len(), token.expose().len());
        assert!(!sealed.windows(8).any(|w| token.expose().as_bytes().windows(8).any(|t| t == w)));
        assert_eq!(id("k1").open(&tenant, &sealed).expect("opens").expose(), token.expose());
        assert!(id("k2").open(&tenant, &sealed).is_none());
        assert!(id("k1").open(&TenantId::parse("other", "tenant").expect("valid"), &sealed).is_none());
    }

    #[test]
    fn a_request_id_never_prints() {
        assert!(!format!("{:?}", id("secret-key")).contains("secret"));
    }

    #[test]
    fn digests_tell_absent_from_empty_and_fields_apart() {
        let digest = |f: &dyn Fn(&mut Digester)| {
            let mut d = Digester::new("test");
            f(&mut d);
            d.finish()
        };
        let absent = digest(&|d| {
            d.optional(None);
        });
        let empty = digest(&|d| {
            d.optional(Some(""));
        });
        assert_ne!(absent, empty);
        let ab_c = digest(&|d| {
            d.text("ab").text("c");
        });
        let a_bc = digest(&|d| {
            d.text("a").text("bc");
        });
        assert_ne!(ab_c, a_bc);
        let again = digest(&|d| {
            d.text("ab").text("c");
        });
        assert_eq!(ab_c, again);
    }
}
