//! Identifiers, parsed once at the edge.
//!
//! A session has a public [`SessionId`] (safe to log) and a secret
//! [`Token`] (256 random bits, shown once). Only the token's SHA-256
//! [`TokenHash`] is ever stored, and `Token` does not print.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use super::invalid::InvalidInput;

const TOKEN_PREFIX: &str = "sdt_";
const TOKEN_BYTES: usize = 32;
/// `sdt_` and 43 characters of unpadded base64url for 32 bytes.
const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 43;
/// The bits of a token's last character that lie past its 256: 43 × 6 =
/// 258, so the lowest two.
const PAST_THE_BYTES: u8 = (1 << (43 * 6 - TOKEN_BYTES * 8)) - 1;

fn random_hex_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn parse_hex_id(value: &str, field: &str, what: &str) -> Result<String, InvalidInput> {
    let valid = value.len() == 32 && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(InvalidInput::new(field, format!("must be a {what} id: 32 lower-case hex digits")))
    }
}

/// The public id of a session: 128 random bits as hex. Safe in logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

impl SessionId {
    pub fn generate() -> Self {
        Self(random_hex_id())
    }

    pub fn parse(value: &str, field: &str) -> Result<Self, InvalidInput> {
        parse_hex_id(value, field, "session").map(Self)
    }

    /// Rebuilds an id read back from a store, which only holds valid ids.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's text, for an answer that takes it over.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tenant a session belongs to: the tenant of the API key that
/// created it. Sessions of one tenant are invisible to every other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl Default for TenantId {
    /// The tenant of a server running without API keys.
    fn default() -> Self {
        Self("default".to_owned())
    }
}

impl TenantId {
    /// 1 to 64 characters of letters, digits, `.`, `_` and `-`.
    pub fn parse(value: &str, field: &str) -> Result<Self, InvalidInput> {
        let valid = (1..=64).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidInput::new(field, "must be 1 to 64 letters, digits, '.', '_' or '-'"))
        }
    }

    /// Rebuilds a tenant read back from a store, which only holds valid ones.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant's text, for an answer that takes it over.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of a kept session log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogId(String);

impl LogId {
    pub fn generate() -> Self {
        Self(random_hex_id())
    }

    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of a time-limited privilege elevation.
///
/// An id issued by [`PromotionId::generate_for`] tells which session it was
/// issued for: 8 random bytes, then 8 bytes of SHA-256 over them and the
/// session's id. Demote thus tells a promotion that is over (OK) from an id
/// the session never had (NOT_FOUND) without remembering ended promotions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PromotionId(String);

const PROMOTION_NONCE_BYTES: usize = 8;

fn promotion_tag(nonce: &[u8], session: &SessionId) -> [u8; 8] {
    let digest = Sha256::new().chain_update(nonce).chain_update(session.as_str().as_bytes()).finalize();
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    tag
}

impl PromotionId {
    /// A random id that names no session (for tests and records that do
    /// not need one).
    pub fn generate() -> Self {
        Self(random_hex_id())
    }

    /// A new id for a promotion of `session`.
    pub fn generate_for(session: &SessionId) -> Self {
        let mut nonce = [0u8; PROMOTION_NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        Self(format!("{}{}", hex::encode(nonce), hex::encode(promotion_tag(&nonce, session))))
    }

    /// Whether this id was issued for a promotion of `session`.
    pub fn issued_for(&self, session: &SessionId) -> bool {
        let Ok(bytes) = hex::decode(&self.0) else { return false };
        bytes.len() == 2 * PROMOTION_NONCE_BYTES
            && bytes[PROMOTION_NONCE_BYTES..] == promotion_tag(&bytes[..PROMOTION_NONCE_BYTES], session)
    }

    pub fn parse(value: &str, field: &str) -> Result<Self, InvalidInput> {
        parse_hex_id(value, field, "promotion").map(Self)
    }

    /// Rebuilds an id kept by sessiond, which only holds valid ones.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A session's secret. Deliberately not `Debug`-printable in full and not
/// `Display`: it must never reach a log, span or error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// 256 bits from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn parse(value: &str, field: &str) -> Result<Self, InvalidInput> {
        if Self::well_formed(value) { Ok(Self(value.to_owned())) } else { Err(Self::malformed(field)) }
    }

    /// [`Token::parse`] of a request's own text, kept without a copy.
    pub fn parse_owned(value: String, field: &str) -> Result<Self, InvalidInput> {
        if Self::well_formed(&value) { Ok(Self(value)) } else { Err(Self::malformed(field)) }
    }

    /// The prefix, then 256 bits in unpadded URL-safe base64: 43 characters
    /// of its alphabet, the last of which carries two bits past the 256,
    /// both zero (as a strict decoder requires). Checked without decoding.
    fn well_formed(value: &str) -> bool {
        if value.len() != TOKEN_LEN {
            return false;
        }
        let Some(encoded) = value.strip_prefix(TOKEN_PREFIX) else { return false };
        // One pass without branches: any byte outside the alphabet sets NOT_BASE64.
        let all = encoded.bytes().fold(0, |all, b| all | SEXTETS[usize::from(b)]);
        let last = SEXTETS[usize::from(encoded.as_bytes()[encoded.len() - 1])];
        all & NOT_BASE64 == 0 && last & PAST_THE_BYTES == 0
    }

    fn malformed(field: &str) -> InvalidInput {
        // The message names the shape, never the value received.
        InvalidInput::new(field, "must be a session token as answered by CreateSession")
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The secret itself, for the one answer that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What each byte stands for in URL-safe base64: its six bits, or
/// [`NOT_BASE64`].
const SEXTETS: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut table = [NOT_BASE64; 256];
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// A byte outside the alphabet: a bit no sextet has.
const NOT_BASE64: u8 = 0x80;

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// SHA-256 of a token: what the stores index sessions by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_and_hashes_stably() {
        let token = Token::generate();
        let parsed = Token::parse(token.expose(), "token").expect("a generated token is well formed");
        assert_eq!(parsed.hash(), token.hash());
    }

    #[test]
    fn a_token_never_prints() {
        let token = Token::generate();
        assert!(!format!("{token:?}").contains(&token.expose()[4..]));
    }

    #[test]
    fn a_promotion_id_tells_the_session_it_was_issued_for() {
        let (mine, other) = (SessionId::generate(), SessionId::generate());
        let id = PromotionId::generate_for(&mine);
        let parsed = PromotionId::parse(id.as_str(), "promotion_id").expect("an issued id is well formed");
        assert!(parsed.issued_for(&mine));
        assert!(!parsed.issued_for(&other));
        assert!(!PromotionId::generate().issued_for(&mine));
    }

    #[test]
    fn a_token_is_well_formed_exactly_when_it_decodes_to_256_bits() {
        let decodes = |value: &str| {
            let mut bytes = [0u8; TOKEN_BYTES + 3];
            value.len() == TOKEN_LEN
                && value.starts_with(TOKEN_PREFIX)
                && URL_SAFE_NO_PAD
                    .decode_slice(&value[TOKEN_PREFIX.len()..], &mut bytes)
                    .is_ok_and(|n| n == TOKEN_BYTES)
        };
        let token = Token::generate();
        let mut values = vec![String::new(), token.expose().to_owned(), TOKEN_PREFIX.to_owned()];
        let (body, last) = token.expose().split_at(TOKEN_LEN - 1);
        for c in (0..=u8::MAX).map(char::from) {
            // Every character as the last (two bits past the 256), in the
            // middle, and one too many.
            values.push(format!("{body}{c}"));
            values.push(format!("{}{c}{}", &body[..20], &token.expose()[21..]));
            values.push(format!("{body}{last}{c}"));
        }
        values.push(body.to_owned());
        values.push(format!("sdu_{}", &token.expose()[4..]));
        values.push(format!("{body}="));
        for value in &values {
            assert_eq!(Token::well_formed(value), decodes(value), "{value:?}");
        }
        assert!(values.iter().filter(|v| Token::well_formed(v)).count() >= 16 + 64);
    }

    #[test]
    fn malformed_ids_are_rejected_with_the_field_name() {
        let err = SessionId::parse("not-an-id", "session.session_id").unwrap_err();
        assert_eq!(err.field, "session.session_id");
        assert!(Token::parse("sdt_short", "session.token").is_err());
    }
}
