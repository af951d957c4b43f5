//! The cache's compact form of a session record.
//!
//! A [`Session`] is some 450 bytes before its strings, half of them for
//! labels and an end that most sessions lack, and every string is an
//! allocation of its own. [`Packed`] keeps a record in one shared
//! allocation of about its encoded size (about 100 bytes for a web user's
//! session); a hit rebuilds the record with [`Packed::unpack`], as it hands
//! out an owned one anyway. The id is the cache's key, so it is not packed.
//!
//! Its last activity is not packed either: it moves on while the rest
//! stays, so it sits beside the record in a cell that activity writes move
//! forward in place, without dropping the record from the cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::clock::UnixMillis;
use crate::domain::{
    EndReason, GrantNames, Grants, Labels, LogId, Promotion, PromotionId, Session, SessionEnd, SessionId, SessionKind,
    TenantId, Timing, TokenHash,
};

/// A session record, but for its id, packed into one shared allocation,
/// and its last activity. Cloning shares both.
#[derive(Debug, Clone)]
pub(super) struct Packed(Arc<[u8]>, Arc<AtomicI64>);

/// The token hash comes first, so [`Packed::token_hash`] reads it in place.
const TOKEN_HASH_LEN: usize = 32;

impl Packed {
    pub(super) fn pack(session: &Session) -> Self {
        // Destructured, so that a new field cannot be left out.
        let Session {
            id: _,
            token_hash,
            tenant,
            kind,
            user_id,
            labels,
            created_at,
            last_active_at: _,
            idle_timeout,
            lifetime,
            trusted,
            grants,
            grants_version,
            end,
        } = session;
        let mut out = Writer(Vec::with_capacity(160));
        out.bytes(&token_hash.0);
        out.str(tenant.as_str());
        out.index(SessionKind::ALL, kind);
        out.option(user_id.as_deref(), Writer::str);
        let Labels { endpoint, method, future_call, client_address, user_agent } = labels;
        for label in [endpoint, method, future_call, client_address, user_agent] {
            out.str(label);
        }
        out.millis(*created_at);
        out.option(*idle_timeout, Writer::duration);
        out.option(*lifetime, Writer::duration);
        out.flag(*trusted);
        let Grants { privileges, roles, promotions } = grants;
        out.strs(privileges);
        out.strs(roles);
        out.len(promotions.len());
        for Promotion { id, privilege, expires_at } in promotions {
            out.str(id.as_str());
            out.str(privilege);
            out.millis(*expires_at);
        }
        out.varint(*grants_version);
        out.option(end.as_ref(), |out, end| {
            let SessionEnd { reason, at, error, stack_trace, log_id, slow } = end;
            out.index(EndReason::ALL, reason);
            out.millis(*at);
            out.option(error.as_deref(), Writer::str);
            out.option(stack_trace.as_deref(), Writer::str);
            out.option(log_id.as_ref().map(LogId::as_str), Writer::str);
            out.flag(*slow);
        });
        Self(out.0.into(), Arc::new(AtomicI64::new(session.last_active_at.0)))
    }

    /// Moves the record's last activity forward to `at` (never back).
    pub(super) fn active_at(&self, at: UnixMillis) {
        self.1.fetch_max(at.0, Ordering::AcqRel);
    }

    pub(super) fn token_hash(&self) -> TokenHash {
        let mut hash = [0; TOKEN_HASH_LEN];
        hash.copy_from_slice(&self.0[..TOKEN_HASH_LEN]);
        TokenHash(hash)
    }

    /// The record packed, with its id.
    pub(super) fn unpack(&self, id: SessionId) -> Session {
        let mut input = Reader(&self.0);
        let token_hash = TokenHash(input.array());
        let tenant = TenantId::from_stored(input.string());
        let kind = input.item(SessionKind::ALL);
        let user_id = input.option(Reader::string);
        let labels = input.labels();
        let created_at = input.millis();
        let last_active_at = UnixMillis(self.1.load(Ordering::Acquire));
        let idle_timeout = input.option(Reader::duration);
        let lifetime = input.option(Reader::duration);
        let trusted = input.flag();
        let privileges = input.strings();
        let roles = input.strings();
        let promotions = (0..input.len())
            .map(|_| Promotion {
                id: PromotionId::from_stored(input.string()),
                privilege: input.string(),
                expires_at: input.millis(),
            })
            .collect();
        let grants_version = input.varint();
        let end = input.option(|input| SessionEnd {
            reason: input.item(EndReason::ALL),
            at: input.millis(),
            error: input.option(Reader::string),
            stack_trace: input.option(Reader::string),
            log_id: input.option(|input| LogId::from_stored(input.string())),
            slow: input.flag(),
        });
        Session {
            id,
            token_hash,
            tenant,
            kind,
            user_id,
            labels,
            created_at,
            last_active_at,
            idle_timeout,
            lifetime,
            trusted,
            grants: Grants { privileges, roles, promotions },
            grants_version,
            end,
        }
    }
}

/// A cached record read in place: what a check of the session needs
/// (tenant, kind, user, timing, end, grants), found by one pass over the
/// packed bytes that allocates nothing; the whole [`Session`] is unpacked
/// only if it is asked for ([`CachedRecord::into_session`]).
#[derive(Debug, Clone)]
pub struct CachedRecord {
    id: SessionId,
    packed: Packed,
    tenant: std::ops::Range<usize>,
    kind: SessionKind,
    user_id: Option<std::ops::Range<usize>>,
    /// Where the labels start.
    labels: usize,
    timing: Timing,
    trusted: bool,
    /// Where the privileges', the roles' and the promotions' lists start.
    privileges: usize,
    roles: usize,
    promotions: usize,
    end: Option<EndReason>,
}

impl Packed {
    /// The record read in place, with its id. Takes the record the cache
    /// handed out rather than cloning it again: each clone and drop writes
    /// the shared counts, on every core that reads the session.
    pub(super) fn read(self, id: SessionId) -> CachedRecord {
        let bytes: &[u8] = &self.0;
        let mut input = Reader(bytes);
        let at = |input: &Reader<'_>| bytes.len() - input.0.len();
        // Where the string at the front of `input` lies in `bytes`.
        let span = |input: &mut Reader<'_>| {
            let len = input.len();
            let start = at(input);
            input.take(len);
            start..start + len
        };
        input.take(TOKEN_HASH_LEN);
        let tenant = span(&mut input);
        let kind = input.item(SessionKind::ALL);
        let user_id = input.option(span);
        let labels = at(&input);
        for _label in 0..5 {
            input.skip_str();
        }
        let created_at = input.millis();
        let idle_timeout = input.option(Reader::duration);
        let lifetime = input.option(Reader::duration);
        let trusted = input.flag();
        let privileges = at(&input);
        input.skip_strs();
        let roles = at(&input);
        input.skip_strs();
        let promotions = at(&input);
        for _promotion in 0..input.len() {
            input.skip_str();
            input.skip_str();
            input.millis();
        }
        input.varint();
        let end = input.option(|input| input.item(EndReason::ALL));
        let last_active_at = UnixMillis(self.1.load(Ordering::Acquire));
        let timing = Timing { created_at, last_active_at, idle_timeout, lifetime };
        CachedRecord {
            id,
            packed: self,
            tenant,
            kind,
            user_id,
            labels,
            timing,
            trusted,
            privileges,
            roles,
            promotions,
            end,
        }
    }
}

impl CachedRecord {
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    pub fn tenant(&self) -> &str {
        self.str_at(self.tenant.clone())
    }

    pub fn kind(&self) -> SessionKind {
        self.kind
    }

    pub fn user_id(&self) -> Option<&str> {
        self.user_id.clone().map(|at| self.str_at(at))
    }

    pub fn labels(&self) -> Labels {
        Reader(&self.packed.0[self.labels..]).labels()
    }

    fn str_at(&self, at: std::ops::Range<usize>) -> &str {
        std::str::from_utf8(&self.packed.0[at]).expect("written from a str")
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// How the session ended, if it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end
    }

    /// The grants, by name, read in place.
    pub fn grants(
        &self,
    ) -> GrantNames<impl Iterator<Item = &str>, impl Iterator<Item = (&str, UnixMillis)>, impl Iterator<Item = &str>>
    {
        let bytes: &[u8] = &self.packed.0;
        let mut input = Reader(&bytes[self.promotions..]);
        let promotions = (0..input.len()).map(move |_| {
            input.skip_str();
            (input.str(), input.millis())
        });
        GrantNames { privileges: strs(&bytes[self.privileges..]), promotions, roles: strs(&bytes[self.roles..]) }
    }

    /// The whole record.
    pub fn into_session(self) -> Session {
        self.packed.unpack(self.id)
    }
}

/// The list of strings `bytes` starts with, in place.
fn strs(bytes: &[u8]) -> impl Iterator<Item = &str> {
    let mut input = Reader(bytes);
    (0..input.len()).map(move |_| input.str())
}

/// Appends values; [`Reader`] reads them back in the same order.
struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// LEB128: seven bits a byte, low first; small numbers take one byte.
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn len(&mut self, len: usize) {
        self.varint(len as u64);
    }

    fn flag(&mut self, flag: bool) {
        self.0.push(u8::from(flag));
    }

    fn str(&mut self, text: &str) {
        self.len(text.len());
        self.bytes(text.as_bytes());
    }

    fn strs(&mut self, texts: &[String]) {
        self.len(texts.len());
        for text in texts {
            self.str(text);
        }
    }

    fn millis(&mut self, at: UnixMillis) {
        self.bytes(&at.0.to_le_bytes());
    }

    fn duration(&mut self, duration: Duration) {
        self.varint(duration.as_secs());
        self.varint(u64::from(duration.subsec_nanos()));
    }

    /// A closed vocabulary's value, as its position in `all`.
    fn index<T: PartialEq>(&mut self, all: &[T], value: &T) {
        let index = all.iter().position(|v| v == value).expect("`ALL` lists every variant");
        self.len(index);
    }

    fn option<T>(&mut self, value: Option<T>, write: impl FnOnce(&mut Self, T)) {
        self.flag(value.is_some());
        if let Some(value) = value {
            write(self, value);
        }
    }
}

/// Reads what a [`Writer`] wrote. Only ever given [`Packed::pack`]'s
/// output, so the bytes are always there and well formed: a failure to
/// read is a bug in this file, and panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        taken
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        self.take(N).try_into().expect("`take` answers N bytes")
    }

    fn varint(&mut self) -> u64 {
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let [byte] = self.array();
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        value
    }

    fn len(&mut self) -> usize {
        usize::try_from(self.varint()).expect("written from a usize")
    }

    fn flag(&mut self) -> bool {
        self.array::<1>() != [0]
    }

    fn string(&mut self) -> String {
        let len = self.len();
        String::from_utf8(self.take(len).to_vec()).expect("written from a str")
    }

    /// A string in place.
    fn str(&mut self) -> &'a str {
        let len = self.len();
        std::str::from_utf8(self.take(len)).expect("written from a str")
    }

    /// The five labels, in the order `pack` writes them.
    fn labels(&mut self) -> Labels {
        Labels {
            endpoint: self.string(),
            method: self.string(),
            future_call: self.string(),
            client_address: self.string(),
            user_agent: self.string(),
        }
    }

    fn skip_str(&mut self) {
        let len = self.len();
        self.take(len);
    }

    fn skip_strs(&mut self) {
        for _ in 0..self.len() {
            self.skip_str();
        }
    }

    fn strings(&mut self) -> Vec<String> {
        (0..self.len()).map(|_| self.string()).collect()
    }

    fn millis(&mut self) -> UnixMillis {
        UnixMillis(i64::from_le_bytes(self.array()))
    }

    fn duration(&mut self) -> Duration {
        let secs = self.varint();
        let nanos = u32::try_from(self.varint()).expect("written from a u32");
        Duration::new(secs, nanos)
    }

    fn item<T: Copy>(&mut self, all: &[T]) -> T {
        all[self.len()]
    }

    fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> T) -> Option<T> {
        self.flag().then(|| read(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare() -> Session {
        crate::store::fixtures::session(SessionKind::WebUser, None, UnixMillis(1_700_000_000_000))
    }

    fn full() -> Session {
        Session {
            id: SessionId::generate(),
            token_hash: TokenHash(std::array::from_fn(|i| i as u8)),
            tenant: TenantId::parse("acme-eu.1", "tenant").expect("a valid tenant"),
            kind: SessionKind::Standalone,
            user_id: Some("ålice".to_owned()),
            labels: Labels {
                endpoint: "/cart".to_owned(),
                method: "checkout".to_owned(),
                future_call: "nightly".to_owned(),
                client_address: "10.0.0.7:51234".to_owned(),
                user_agent: "curl/8 ".repeat(40),
            },
            created_at: UnixMillis(-5),
            last_active_at: UnixMillis(i64::MAX),
            idle_timeout: Some(Duration::new(1_800, 999_999_999)),
            lifetime: Some(Duration::new(u64::MAX, 0)),
            trusted: true,
            grants: Grants {
                privileges: vec!["viewbasic".to_owned(), String::new()],
                roles: vec!["manager".to_owned()],
                promotions: vec![Promotion {
                    id: PromotionId::generate(),
                    privilege: "editsales".to_owned(),
                    expires_at: UnixMillis(1_700_000_360_000),
                }],
            },
            grants_version: u64::MAX,
            end: Some(SessionEnd {
                reason: EndReason::ServerCrashed,
                at: UnixMillis(1_700_000_400_000),
                error: Some(String::new()),
                stack_trace: Some("at main\n".repeat(300)),
                log_id: Some(LogId::generate()),
                slow: true,
            }),
        }
    }

    #[test]
    fn a_record_unpacks_to_what_was_packed() {
        for session in [bare(), full()] {
            let packed = Packed::pack(&session);
            assert_eq!(packed.token_hash(), session.token_hash);
            assert_eq!(packed.unpack(session.id.clone()), session);
        }
    }

    #[test]
    fn an_empty_text_stays_distinct_from_a_missing_one() {
        let mut session = full();
        session.user_id = Some(String::new());
        let end = session.end.as_mut().expect("the full session has ended");
        (end.error, end.stack_trace, end.log_id) = (None, Some(String::new()), None);
        assert_eq!(Packed::pack(&session).unpack(session.id.clone()), session);
    }

    #[test]
    fn every_kind_and_end_reason_round_trips() {
        for (kind, reason) in SessionKind::ALL.iter().zip(EndReason::ALL.iter().cycle()) {
            let mut session = full();
            session.kind = *kind;
            session.end.as_mut().expect("the full session has ended").reason = *reason;
            assert_eq!(Packed::pack(&session).unpack(session.id.clone()), session);
        }
    }

    #[test]
    fn a_record_read_in_place_answers_what_its_session_holds() {
        let mut promoted = full();
        promoted.grants.promotions.push(Promotion {
            id: PromotionId::generate(),
            privilege: "ålso".to_owned(),
            expires_at: UnixMillis(7),
        });
        for session in [bare(), full(), promoted] {
            let read = Packed::pack(&session).read(session.id.clone());
            assert_eq!(read.id(), &session.id);
            assert_eq!(read.tenant(), session.tenant.as_str());
            assert_eq!(read.kind(), session.kind);
            assert_eq!(read.user_id(), session.user_id.as_deref());
            assert_eq!(read.labels(), session.labels);
            assert_eq!(read.timing(), session.timing());
            assert_eq!(read.trusted(), session.trusted);
            assert_eq!(read.end_reason(), session.end.as_ref().map(|end| end.reason));
            let GrantNames { privileges, promotions, roles } = read.grants();
            let grants = &session.grants;
            assert!(privileges.eq(grants.privileges.iter().map(String::as_str)));
            assert!(roles.eq(grants.roles.iter().map(String::as_str)));
            assert!(promotions.eq(grants.promotions.iter().map(|p| (p.privilege.as_str(), p.expires_at))));
            assert_eq!(read.into_session(), session);
        }
    }

    #[test]
    fn a_web_user_session_packs_small() {
        let mut session = bare();
        session.user_id = Some("bench-user-12345".to_owned());
        session.idle_timeout = Some(Duration::from_secs(3_600));
        session.lifetime = Some(Duration::from_secs(30 * 24 * 3_600));
        session.grants.roles = vec!["manager".to_owned()];
        assert!(Packed::pack(&session).0.len() <= 128, "{} bytes", Packed::pack(&session).0.len());
    }
}
