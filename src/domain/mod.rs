//! The domain: what a session is, independent of gRPC and of any store.

pub mod events;
pub mod ids;
pub mod invalid;
pub mod kind;
pub mod logs;
pub mod messages;
pub mod privileges;
pub mod request_id;
pub mod session;
pub mod storage;

pub use events::{Event, EventFilter, NewEvent};
pub use ids::{LogId, PromotionId, SessionId, TenantId, Token, TokenHash};
pub use invalid::{InvalidInput, InvalidRequest, QuotaExceeded, Violations, all};
pub use kind::{EndReason, EventType, SessionKind};
pub use logs::{LogCursor, LogEntry, LogLevel, LogPage, LogPolicies, LogPolicy, LogQuery, LogRecord, UnixMicros};
pub use messages::{Channel, Message, NewMessage, Scope, TenantChannel};
pub use privileges::{GrantNames, RoleBook};
pub use request_id::{RequestDigest, RequestId, RequestKey};
pub use session::{Expiry, Grants, Labels, Promotion, Session, SessionEnd, Timing};
pub use storage::{EncodedStorage, StorageChange, StorageLimits, StorageMap, VersionedStorage};
