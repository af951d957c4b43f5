//! The closed vocabularies of the domain: session kinds, end reasons and
//! event types. Each has a stable lower-case name, used in stores, settings
//! and logs; the wire enums are joined to these by `From` in `grpc::convert`.

use std::time::Duration;

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            pub fn from_name(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// What a session stands for: Serverpod's session types and 4D's.
    SessionKind {
        MethodCall = "method_call",
        WebCall = "web_call",
        MethodStream = "method_stream",
        Streaming = "streaming",
        FutureCall = "future_call",
        Internal = "internal",
        WebUser = "web_user",
        RemoteUser = "remote_user",
        StoredProcedure = "stored_procedure",
        Standalone = "standalone",
    }
}

impl SessionKind {
    /// Sessions that live within one request or stream of the calling
    /// service. They do not outlive sessiond: a shutdown ends them, and a
    /// crash ends them at the next start.
    pub fn is_request_scoped(self) -> bool {
        matches!(self, Self::MethodCall | Self::WebCall | Self::MethodStream | Self::Streaming)
    }

    /// Only these kinds may be created trusted (holding every privilege).
    pub fn may_be_trusted(self) -> bool {
        matches!(self, Self::StoredProcedure | Self::Standalone)
    }

    /// The idle timeout used when a create request leaves it unset.
    /// Internal work and future calls are not idle-timed by default.
    pub fn default_idle_timeout(self) -> Option<Duration> {
        const MINUTE: u64 = 60;
        match self {
            Self::FutureCall | Self::Internal | Self::StoredProcedure | Self::Standalone => None,
            Self::MethodCall | Self::WebCall => Some(Duration::from_secs(5 * MINUTE)),
            Self::MethodStream | Self::Streaming => Some(Duration::from_secs(30 * MINUTE)),
            // 4D's web and remote sessions default to 60 minutes idle.
            Self::WebUser | Self::RemoteUser => Some(Duration::from_secs(60 * MINUTE)),
        }
    }

    /// The absolute lifetime used when a create request leaves it unset.
    pub fn default_lifetime(self) -> Option<Duration> {
        const HOUR: u64 = 3600;
        match self {
            Self::MethodCall | Self::WebCall => Some(Duration::from_secs(HOUR)),
            Self::FutureCall | Self::Internal => Some(Duration::from_secs(24 * HOUR)),
            Self::MethodStream | Self::Streaming => Some(Duration::from_secs(24 * HOUR)),
            Self::WebUser | Self::RemoteUser => Some(Duration::from_secs(30 * 24 * HOUR)),
            Self::StoredProcedure | Self::Standalone => None,
        }
    }
}

named_enum! {
    /// Why a session ended.
    EndReason {
        Closed = "closed",
        Failed = "failed",
        IdleTimeout = "idle_timeout",
        LifetimeReached = "lifetime_reached",
        Revoked = "revoked",
        ServerShutdown = "server_shutdown",
        ServerCrashed = "server_crashed",
    }
}

impl EndReason {
    /// The `google.rpc.ErrorInfo` reason answered for calls on a session
    /// that ended this way.
    pub fn error_reason(self) -> &'static str {
        match self {
            Self::IdleTimeout | Self::LifetimeReached => "SESSION_EXPIRED",
            Self::Revoked => "SESSION_REVOKED",
            Self::Closed | Self::Failed | Self::ServerShutdown | Self::ServerCrashed => "SESSION_CLOSED",
        }
    }

    /// The lifecycle event recorded when a session ends this way.
    pub fn event_type(self) -> EventType {
        match self {
            Self::IdleTimeout | Self::LifetimeReached => EventType::Expired,
            Self::Revoked => EventType::Revoked,
            Self::Closed | Self::Failed | Self::ServerShutdown | Self::ServerCrashed => EventType::Closed,
        }
    }
}

named_enum! {
    /// What happened to a session, as WatchSessions reports it.
    EventType {
        Created = "created",
        Closed = "closed",
        Expired = "expired",
        Revoked = "revoked",
        PrivilegesChanged = "privileges_changed",
        StorageChanged = "storage_changed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for kind in SessionKind::ALL {
            assert_eq!(SessionKind::from_name(kind.as_str()), Some(*kind));
        }
        for reason in EndReason::ALL {
            assert_eq!(EndReason::from_name(reason.as_str()), Some(*reason));
        }
        for event in EventType::ALL {
            assert_eq!(EventType::from_name(event.as_str()), Some(*event));
        }
    }

    #[test]
    fn internal_and_future_call_sessions_have_no_default_idle_timeout() {
        assert_eq!(SessionKind::Internal.default_idle_timeout(), None);
        assert_eq!(SessionKind::FutureCall.default_idle_timeout(), None);
        assert!(SessionKind::WebUser.default_idle_timeout().is_some());
    }
}
