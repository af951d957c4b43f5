"""sessiond's answers as Python values, and the conversions to and from the wire.

Storage values and log fields are plain Python (dict, list, str, float or
int, bool, None ↔ google.protobuf.Value), durations are `timedelta` (or
seconds as a number), times are timezone-aware `datetime` in UTC. Enums are
`str` enums whose values are the lower-case proto names without prefix
("web_user"); wherever one is taken, its value as a string works too.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Optional, Union

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from .v1 import messages_pb2 as mpb
from .v1 import sessiond_pb2 as pb

#: A duration as sessiond's calls take it: a timedelta, or seconds.
Duration = Union[timedelta, float, int]


class _ProtoEnum(str, enum.Enum):
    """A proto enum: its values are the proto names, lower-cased, without the prefix."""

    @classmethod
    def parse(cls, value):
        """The member for a member or its value ("web_user", "WEB_USER")."""
        if isinstance(value, cls):
            return value
        return cls(str(value).lower())

    def to_proto(self) -> int:
        proto, prefix = _PROTO[type(self)]
        return proto.Value(prefix + self.value.upper())

    @classmethod
    def from_proto(cls, number: int):
        """The member for a proto number; None for the UNSPECIFIED value."""
        proto, prefix = _PROTO[cls]
        name = proto.Name(number)
        return None if name.endswith("_UNSPECIFIED") else cls(name[len(prefix):].lower())


class Kind(_ProtoEnum):
    """What a session stands for (SessionKind)."""

    METHOD_CALL = "method_call"
    WEB_CALL = "web_call"
    METHOD_STREAM = "method_stream"
    STREAMING = "streaming"
    FUTURE_CALL = "future_call"
    INTERNAL = "internal"
    WEB_USER = "web_user"
    REMOTE_USER = "remote_user"
    STORED_PROCEDURE = "stored_procedure"
    STANDALONE = "standalone"


class State(_ProtoEnum):
    OPEN = "open"
    ENDED = "ended"


class EndReason(_ProtoEnum):
    """Why a session ended."""

    CLOSED = "closed"
    FAILED = "failed"
    IDLE_TIMEOUT = "idle_timeout"
    LIFETIME_REACHED = "lifetime_reached"
    REVOKED = "revoked"
    SERVER_SHUTDOWN = "server_shutdown"
    SERVER_CRASHED = "server_crashed"


class LogLevel(_ProtoEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    FATAL = "fatal"


class EventType(_ProtoEnum):
    CREATED = "created"
    CLOSED = "closed"
    EXPIRED = "expired"
    REVOKED = "revoked"
    PRIVILEGES_CHANGED = "privileges_changed"
    STORAGE_CHANGED = "storage_changed"


class Scope(_ProtoEnum):
    """How far a posted message reaches (MessageScope)."""

    #: Only the subscribers on the replica that took the post; not numbered, not kept.
    LOCAL = "local"
    #: Every subscriber on every replica sharing the store; numbered and kept for replay.
    GLOBAL = "global"


#: Each enum's proto enum and value prefix (tests/test_generated.py checks they match).
_PROTO: dict[type, tuple[Any, str]] = {
    Kind: (pb.SessionKind, "SESSION_KIND_"),
    State: (pb.SessionState, "SESSION_STATE_"),
    EndReason: (pb.EndReason, "END_REASON_"),
    LogLevel: (pb.LogLevel, "LOG_LEVEL_"),
    EventType: (pb.EventType, "EVENT_TYPE_"),
    Scope: (mpb.MessageScope, "MESSAGE_SCOPE_"),
}


# --- values ---------------------------------------------------------------


def to_value(value: Any) -> struct_pb2.Value:
    """A Python value as a google.protobuf.Value."""
    out = struct_pb2.Value()
    if value is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, (int, float)):
        out.number_value = float(value)
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, Mapping):
        out.struct_value.SetInParent()
        for key, item in value.items():
            out.struct_value.fields[str(key)].CopyFrom(to_value(item))
    elif isinstance(value, (list, tuple)):
        out.list_value.SetInParent()
        for item in value:
            out.list_value.values.append(to_value(item))
    else:
        raise TypeError(f"a storage value must be JSON-like, not {type(value).__name__}")
    return out


def from_value(value: struct_pb2.Value) -> Any:
    """A google.protobuf.Value as a Python value; integral numbers come back as int."""
    which = value.WhichOneof("kind")
    if which == "bool_value":
        return value.bool_value
    if which == "number_value":
        number = value.number_value
        return int(number) if math.isfinite(number) and number.is_integer() else number
    if which == "string_value":
        return value.string_value
    if which == "struct_value":
        return {key: from_value(item) for key, item in value.struct_value.fields.items()}
    if which == "list_value":
        return [from_value(item) for item in value.list_value.values]
    return None


def from_values(values: Mapping[str, struct_pb2.Value]) -> dict[str, Any]:
    return {key: from_value(value) for key, value in values.items()}


# --- durations and times ------------------------------------------------------


def to_duration(value: Duration) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(value if isinstance(value, timedelta) else timedelta(seconds=value))
    return out


def from_duration(message, field_name: str) -> Optional[timedelta]:
    return message.__getattribute__(field_name).ToTimedelta() if message.HasField(field_name) else None


def to_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    if value.tzinfo is None:
        raise ValueError("a time must be timezone-aware (e.g. datetime.now(timezone.utc))")
    out.FromDatetime(value.astimezone(timezone.utc))
    return out


def from_timestamp(message, field_name: str) -> Optional[datetime]:
    if not message.HasField(field_name):
        return None
    return getattr(message, field_name).ToDatetime(tzinfo=timezone.utc)


# --- answers --------------------------------------------------------------


class SessionId(str):
    """A session's public id: pass it where a session is named to name it by id, not token.

    A plain `str` names a session by its secret token.
    """


@dataclass(frozen=True)
class Labels:
    endpoint: str = ""
    method: str = ""
    future_call: str = ""
    client_address: str = ""
    user_agent: str = ""


@dataclass(frozen=True)
class Session:
    """A session as sessiond knows it (never its token)."""

    session_id: SessionId
    kind: Kind
    user_id: str
    labels: Labels
    state: State
    trusted: bool
    created_at: Optional[datetime]
    last_active_at: Optional[datetime]
    #: When it ends unless used again, or at the latest; None for never.
    expires_at: Optional[datetime]
    idle_timeout: Optional[timedelta]
    lifetime: Optional[timedelta]
    end_reason: Optional[EndReason]
    ended_at: Optional[datetime]
    duration: Optional[timedelta]
    time_left: Optional[timedelta]

    @classmethod
    def from_proto(cls, s: pb.Session) -> "Session":
        return cls(
            session_id=SessionId(s.session_id),
            kind=Kind.from_proto(s.kind),
            user_id=s.user_id,
            labels=Labels(s.labels.endpoint, s.labels.method, s.labels.future_call,
                          s.labels.client_address, s.labels.user_agent),
            state=State.from_proto(s.state),
            trusted=s.trusted,
            created_at=from_timestamp(s, "created_at"),
            last_active_at=from_timestamp(s, "last_active_at"),
            expires_at=from_timestamp(s, "expires_at"),
            idle_timeout=from_duration(s, "idle_timeout"),
            lifetime=from_duration(s, "lifetime"),
            end_reason=EndReason.from_proto(s.end_reason),
            ended_at=from_timestamp(s, "ended_at"),
            duration=from_duration(s, "duration"),
            time_left=from_duration(s, "time_left"),
        )


@dataclass(frozen=True)
class CreatedSession:
    """CreateSession's answer: the secret token (shown only here) and the session."""

    token: str
    session: Session
    #: The CREATED event's sequence: a consistency token (min_sequence).
    sequence: int


@dataclass(frozen=True)
class Identity:
    """Authenticate's answer: who the token's session is, and the privileges asked."""

    session_id: SessionId
    user_id: str
    tenant: str
    kind: Kind
    roles: tuple[str, ...]
    expires_at: Optional[datetime]
    #: Each privilege asked, as asked, and whether the session holds it.
    granted: dict[str, bool]
    #: Whether every privilege asked is held (True when none was asked).
    all_granted: bool
    trusted: bool


@dataclass(frozen=True)
class Closed:
    """CloseSession's answer."""

    session_id: SessionId
    end_reason: Optional[EndReason]
    #: The kept log's id; empty when the log policy did not keep it.
    log_id: str


@dataclass(frozen=True)
class SessionPage:
    sessions: list[Session]
    #: Pass to the next list_sessions call; empty on the last page.
    next_page_token: str


@dataclass(frozen=True)
class Revoked:
    session_ids: list[SessionId]
    sequence: int


@dataclass(frozen=True)
class Event:
    """One WatchSessions event."""

    sequence: int
    type: EventType
    session_id: SessionId
    user_id: str
    kind: Optional[Kind]
    end_reason: Optional[EndReason]
    at: Optional[datetime]

    @classmethod
    def from_proto(cls, e: pb.WatchSessionsResponse) -> "Event":
        return cls(e.sequence, EventType.from_proto(e.type), SessionId(e.session_id), e.user_id,
                   Kind.from_proto(e.kind), EndReason.from_proto(e.end_reason), from_timestamp(e, "at"))


@dataclass(frozen=True)
class Promotion:
    promotion_id: str
    privilege: str
    expires_at: Optional[datetime]

    @classmethod
    def from_proto(cls, p: pb.Promotion) -> "Promotion":
        return cls(p.promotion_id, p.privilege, from_timestamp(p, "expires_at"))


@dataclass(frozen=True)
class Privileges:
    """GetPrivileges' answer."""

    #: Every privilege held, expanded through includes and roles, lower case, sorted.
    privileges: list[str]
    granted_privileges: list[str]
    roles: list[str]
    promotions: list[Promotion]
    trusted: bool


@dataclass(frozen=True)
class Check:
    """CheckPrivileges' answer."""

    granted: bool
    #: Each privilege asked, as asked, and whether it is held.
    held: dict[str, bool]


@dataclass(frozen=True)
class Storage:
    """A session's storage: its values (plain Python) and its version."""

    values: dict[str, Any]
    version: int


@dataclass(frozen=True)
class Written:
    """A storage write's answer: the new version and the change's event sequence."""

    version: int
    sequence: int


@dataclass(frozen=True)
class LogEntry:
    """A log entry to write. A plain `str` passed to `log` is an info entry."""

    message: str
    level: Union[LogLevel, str] = LogLevel.INFO
    exception: str = ""
    stack_trace: str = ""
    #: When the client logged it; sessiond's time when None.
    client_time: Optional[datetime] = None

    def to_proto(self) -> pb.LogEntry:
        entry = pb.LogEntry(level=LogLevel.parse(self.level).to_proto(), message=self.message,
                            exception=self.exception, stack_trace=self.stack_trace)
        if self.client_time is not None:
            entry.client_time.CopyFrom(to_timestamp(self.client_time))
        return entry


@dataclass(frozen=True)
class LogRecord:
    """A stored log entry, as QueryLogs answers it."""

    log_id: str
    session_id: SessionId
    user_id: str
    kind: Optional[Kind]
    level: Optional[LogLevel]
    message: str
    exception: str
    stack_trace: str
    client_time: Optional[datetime]
    logged_at: Optional[datetime]
    sequence: int

    @classmethod
    def from_proto(cls, r: pb.LogRecord) -> "LogRecord":
        return cls(r.log_id, SessionId(r.session_id), r.user_id, Kind.from_proto(r.kind),
                   LogLevel.from_proto(r.level), r.message, r.exception, r.stack_trace,
                   from_timestamp(r, "client_time"), from_timestamp(r, "logged_at"), r.sequence)


@dataclass(frozen=True)
class LogPage:
    records: list[LogRecord]
    next_page_token: str = field(default="")


# --- messages -------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    """Post's answer."""

    #: The message's number in its channel (1, 2, …); 0 for a LOCAL message.
    sequence: int
    #: Subscriptions of the replica that took the post it was handed to.
    local_deliveries: int


@dataclass(frozen=True)
class Message:
    """A message as a subscription receives it."""

    channel: str
    #: Its number in the channel, for resuming with after_sequence; 0 for a LOCAL message.
    sequence: int
    #: The payload as posted, as plain Python (dict, list, str, int/float, bool, None).
    payload: Any
    #: The type name as posted ("" when none was given).
    type_name: str
    #: When sessiond accepted the post (millisecond precision).
    posted_at: Optional[datetime]
    scope: Optional[Scope]

    @classmethod
    def from_proto(cls, m: mpb.ChannelMessage) -> "Message":
        return cls(m.channel, m.sequence, from_value(m.payload), m.type_name,
                   from_timestamp(m, "posted_at"), Scope.from_proto(m.scope))


@dataclass(frozen=True)
class SessionEnd:
    """A session of a followed `session:` or `user:` channel ended.

    On a session channel it is the subscription's last item (`final`): the
    iteration stops after it.
    """

    #: The followed channel it concerns (`session:ID` or `user:ID`).
    channel: str
    session_id: SessionId
    end_reason: Optional[EndReason]
    #: Whether the subscription ends with this item (session channels).
    final: bool

    @classmethod
    def from_proto(cls, e: mpb.SessionEnded) -> "SessionEnd":
        return cls(e.channel, SessionId(e.session_id), EndReason.from_proto(e.end_reason), e.ends_subscription)
