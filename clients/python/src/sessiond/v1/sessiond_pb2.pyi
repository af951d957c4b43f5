import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_KIND_UNSPECIFIED: _ClassVar[SessionKind]
    SESSION_KIND_METHOD_CALL: _ClassVar[SessionKind]
    SESSION_KIND_WEB_CALL: _ClassVar[SessionKind]
    SESSION_KIND_METHOD_STREAM: _ClassVar[SessionKind]
    SESSION_KIND_STREAMING: _ClassVar[SessionKind]
    SESSION_KIND_FUTURE_CALL: _ClassVar[SessionKind]
    SESSION_KIND_INTERNAL: _ClassVar[SessionKind]
    SESSION_KIND_WEB_USER: _ClassVar[SessionKind]
    SESSION_KIND_REMOTE_USER: _ClassVar[SessionKind]
    SESSION_KIND_STORED_PROCEDURE: _ClassVar[SessionKind]
    SESSION_KIND_STANDALONE: _ClassVar[SessionKind]

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    SESSION_STATE_OPEN: _ClassVar[SessionState]
    SESSION_STATE_ENDED: _ClassVar[SessionState]

class EndReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    END_REASON_UNSPECIFIED: _ClassVar[EndReason]
    END_REASON_CLOSED: _ClassVar[EndReason]
    END_REASON_FAILED: _ClassVar[EndReason]
    END_REASON_IDLE_TIMEOUT: _ClassVar[EndReason]
    END_REASON_LIFETIME_REACHED: _ClassVar[EndReason]
    END_REASON_REVOKED: _ClassVar[EndReason]
    END_REASON_SERVER_SHUTDOWN: _ClassVar[EndReason]
    END_REASON_SERVER_CRASHED: _ClassVar[EndReason]

class LogLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_LEVEL_UNSPECIFIED: _ClassVar[LogLevel]
    LOG_LEVEL_DEBUG: _ClassVar[LogLevel]
    LOG_LEVEL_INFO: _ClassVar[LogLevel]
    LOG_LEVEL_WARNING: _ClassVar[LogLevel]
    LOG_LEVEL_ERROR: _ClassVar[LogLevel]
    LOG_LEVEL_FATAL: _ClassVar[LogLevel]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_CREATED: _ClassVar[EventType]
    EVENT_TYPE_CLOSED: _ClassVar[EventType]
    EVENT_TYPE_EXPIRED: _ClassVar[EventType]
    EVENT_TYPE_REVOKED: _ClassVar[EventType]
    EVENT_TYPE_PRIVILEGES_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_STORAGE_CHANGED: _ClassVar[EventType]

class CheckMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECK_MODE_UNSPECIFIED: _ClassVar[CheckMode]
    CHECK_MODE_ANY: _ClassVar[CheckMode]
    CHECK_MODE_ALL: _ClassVar[CheckMode]

class StoreKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORE_KIND_UNSPECIFIED: _ClassVar[StoreKind]
    STORE_KIND_EMBEDDED: _ClassVar[StoreKind]
    STORE_KIND_POSTGRES: _ClassVar[StoreKind]
SESSION_KIND_UNSPECIFIED: SessionKind
SESSION_KIND_METHOD_CALL: SessionKind
SESSION_KIND_WEB_CALL: SessionKind
SESSION_KIND_METHOD_STREAM: SessionKind
SESSION_KIND_STREAMING: SessionKind
SESSION_KIND_FUTURE_CALL: SessionKind
SESSION_KIND_INTERNAL: SessionKind
SESSION_KIND_WEB_USER: SessionKind
SESSION_KIND_REMOTE_USER: SessionKind
SESSION_KIND_STORED_PROCEDURE: SessionKind
SESSION_KIND_STANDALONE: SessionKind
SESSION_STATE_UNSPECIFIED: SessionState
SESSION_STATE_OPEN: SessionState
SESSION_STATE_ENDED: SessionState
END_REASON_UNSPECIFIED: EndReason
END_REASON_CLOSED: EndReason
END_REASON_FAILED: EndReason
END_REASON_IDLE_TIMEOUT: EndReason
END_REASON_LIFETIME_REACHED: EndReason
END_REASON_REVOKED: EndReason
END_REASON_SERVER_SHUTDOWN: EndReason
END_REASON_SERVER_CRASHED: EndReason
LOG_LEVEL_UNSPECIFIED: LogLevel
LOG_LEVEL_DEBUG: LogLevel
LOG_LEVEL_INFO: LogLevel
LOG_LEVEL_WARNING: LogLevel
LOG_LEVEL_ERROR: LogLevel
LOG_LEVEL_FATAL: LogLevel
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_CREATED: EventType
EVENT_TYPE_CLOSED: EventType
EVENT_TYPE_EXPIRED: EventType
EVENT_TYPE_REVOKED: EventType
EVENT_TYPE_PRIVILEGES_CHANGED: EventType
EVENT_TYPE_STORAGE_CHANGED: EventType
CHECK_MODE_UNSPECIFIED: CheckMode
CHECK_MODE_ANY: CheckMode
CHECK_MODE_ALL: CheckMode
STORE_KIND_UNSPECIFIED: StoreKind
STORE_KIND_EMBEDDED: StoreKind
STORE_KIND_POSTGRES: StoreKind

class SessionRef(_message.Message):
    __slots__ = ("token", "session_id", "min_sequence")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    token: str
    session_id: str
    min_sequence: int
    def __init__(self, token: _Optional[str] = ..., session_id: _Optional[str] = ..., min_sequence: _Optional[int] = ...) -> None: ...

class SessionLabels(_message.Message):
    __slots__ = ("endpoint", "method", "future_call", "client_address", "user_agent")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    FUTURE_CALL_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    method: str
    future_call: str
    client_address: str
    user_agent: str
    def __init__(self, endpoint: _Optional[str] = ..., method: _Optional[str] = ..., future_call: _Optional[str] = ..., client_address: _Optional[str] = ..., user_agent: _Optional[str] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("session_id", "kind", "user_id", "labels", "created_at", "last_active_at", "expires_at", "idle_timeout", "lifetime", "state", "end_reason", "ended_at", "duration", "time_left", "trusted")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVE_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    TIME_LEFT_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    kind: SessionKind
    user_id: str
    labels: SessionLabels
    created_at: _timestamp_pb2.Timestamp
    last_active_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    idle_timeout: _duration_pb2.Duration
    lifetime: _duration_pb2.Duration
    state: SessionState
    end_reason: EndReason
    ended_at: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    time_left: _duration_pb2.Duration
    trusted: bool
    def __init__(self, session_id: _Optional[str] = ..., kind: _Optional[_Union[SessionKind, str]] = ..., user_id: _Optional[str] = ..., labels: _Optional[_Union[SessionLabels, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_active_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., idle_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lifetime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., state: _Optional[_Union[SessionState, str]] = ..., end_reason: _Optional[_Union[EndReason, str]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., time_left: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., trusted: _Optional[bool] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("kind", "user_id", "labels", "idle_timeout", "lifetime", "privileges", "roles", "storage", "trusted", "request_id")
    class StorageEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGES_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    kind: SessionKind
    user_id: str
    labels: SessionLabels
    idle_timeout: _duration_pb2.Duration
    lifetime: _duration_pb2.Duration
    privileges: _containers.RepeatedScalarFieldContainer[str]
    roles: _containers.RepeatedScalarFieldContainer[str]
    storage: _containers.MessageMap[str, _struct_pb2.Value]
    trusted: bool
    request_id: str
    def __init__(self, kind: _Optional[_Union[SessionKind, str]] = ..., user_id: _Optional[str] = ..., labels: _Optional[_Union[SessionLabels, _Mapping]] = ..., idle_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lifetime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., privileges: _Optional[_Iterable[str]] = ..., roles: _Optional[_Iterable[str]] = ..., storage: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., trusted: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateSessionResponse(_message.Message):
    __slots__ = ("session", "token", "sequence")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    session: Session
    token: str
    sequence: int
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., token: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class TouchSessionRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ...) -> None: ...

class TouchSessionResponse(_message.Message):
    __slots__ = ("expires_at",)
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session", "error", "stack_trace")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STACK_TRACE_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    error: str
    stack_trace: str
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., error: _Optional[str] = ..., stack_trace: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ("session_id", "log_id", "end_reason")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    log_id: str
    end_reason: EndReason
    def __init__(self, session_id: _Optional[str] = ..., log_id: _Optional[str] = ..., end_reason: _Optional[_Union[EndReason, str]] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("user_id", "kind", "state", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    kind: SessionKind
    state: SessionState
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., kind: _Optional[_Union[SessionKind, str]] = ..., state: _Optional[_Union[SessionState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RevokeSessionsRequest(_message.Message):
    __slots__ = ("user_id", "kind", "session_ids")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    kind: SessionKind
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_id: _Optional[str] = ..., kind: _Optional[_Union[SessionKind, str]] = ..., session_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RevokeSessionsResponse(_message.Message):
    __slots__ = ("session_ids", "sequence")
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    sequence: int
    def __init__(self, session_ids: _Optional[_Iterable[str]] = ..., sequence: _Optional[int] = ...) -> None: ...

class WatchSessionsRequest(_message.Message):
    __slots__ = ("session_id", "user_id", "kind", "after_sequence")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    user_id: str
    kind: SessionKind
    after_sequence: int
    def __init__(self, session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., kind: _Optional[_Union[SessionKind, str]] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchSessionsResponse(_message.Message):
    __slots__ = ("sequence", "type", "session_id", "user_id", "kind", "end_reason", "at")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    type: EventType
    session_id: str
    user_id: str
    kind: SessionKind
    end_reason: EndReason
    at: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., kind: _Optional[_Union[SessionKind, str]] = ..., end_reason: _Optional[_Union[EndReason, str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetPrivilegesRequest(_message.Message):
    __slots__ = ("session", "privileges", "roles")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGES_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    privileges: _containers.RepeatedScalarFieldContainer[str]
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., privileges: _Optional[_Iterable[str]] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class SetPrivilegesResponse(_message.Message):
    __slots__ = ("privileges", "sequence")
    PRIVILEGES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    privileges: _containers.RepeatedScalarFieldContainer[str]
    sequence: int
    def __init__(self, privileges: _Optional[_Iterable[str]] = ..., sequence: _Optional[int] = ...) -> None: ...

class GetPrivilegesRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ...) -> None: ...

class Promotion(_message.Message):
    __slots__ = ("promotion_id", "privilege", "expires_at")
    PROMOTION_ID_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    promotion_id: str
    privilege: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, promotion_id: _Optional[str] = ..., privilege: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetPrivilegesResponse(_message.Message):
    __slots__ = ("privileges", "granted_privileges", "roles", "promotions", "trusted")
    PRIVILEGES_FIELD_NUMBER: _ClassVar[int]
    GRANTED_PRIVILEGES_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    PROMOTIONS_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_FIELD_NUMBER: _ClassVar[int]
    privileges: _containers.RepeatedScalarFieldContainer[str]
    granted_privileges: _containers.RepeatedScalarFieldContainer[str]
    roles: _containers.RepeatedScalarFieldContainer[str]
    promotions: _containers.RepeatedCompositeFieldContainer[Promotion]
    trusted: bool
    def __init__(self, privileges: _Optional[_Iterable[str]] = ..., granted_privileges: _Optional[_Iterable[str]] = ..., roles: _Optional[_Iterable[str]] = ..., promotions: _Optional[_Iterable[_Union[Promotion, _Mapping]]] = ..., trusted: _Optional[bool] = ...) -> None: ...

class ClearPrivilegesRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ...) -> None: ...

class ClearPrivilegesResponse(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class AuthenticateRequest(_message.Message):
    __slots__ = ("token", "privileges", "min_sequence")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGES_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    token: str
    privileges: _containers.RepeatedScalarFieldContainer[str]
    min_sequence: int
    def __init__(self, token: _Optional[str] = ..., privileges: _Optional[_Iterable[str]] = ..., min_sequence: _Optional[int] = ...) -> None: ...

class AuthenticateResponse(_message.Message):
    __slots__ = ("session_id", "user_id", "tenant", "kind", "roles", "expires_at", "granted", "all_granted", "trusted")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    ALL_GRANTED_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    user_id: str
    tenant: str
    kind: SessionKind
    roles: _containers.RepeatedScalarFieldContainer[str]
    expires_at: _timestamp_pb2.Timestamp
    granted: _containers.RepeatedScalarFieldContainer[bool]
    all_granted: bool
    trusted: bool
    def __init__(self, session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., tenant: _Optional[str] = ..., kind: _Optional[_Union[SessionKind, str]] = ..., roles: _Optional[_Iterable[str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., granted: _Optional[_Iterable[bool]] = ..., all_granted: _Optional[bool] = ..., trusted: _Optional[bool] = ...) -> None: ...

class HasPrivilegeRequest(_message.Message):
    __slots__ = ("session", "privilege")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGE_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    privilege: str
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., privilege: _Optional[str] = ...) -> None: ...

class HasPrivilegeResponse(_message.Message):
    __slots__ = ("granted",)
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    def __init__(self, granted: _Optional[bool] = ...) -> None: ...

class CheckPrivilegesRequest(_message.Message):
    __slots__ = ("session", "privileges", "mode")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    privileges: _containers.RepeatedScalarFieldContainer[str]
    mode: CheckMode
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., privileges: _Optional[_Iterable[str]] = ..., mode: _Optional[_Union[CheckMode, str]] = ...) -> None: ...

class CheckPrivilegesResponse(_message.Message):
    __slots__ = ("granted", "held")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    held: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, granted: _Optional[bool] = ..., held: _Optional[_Iterable[bool]] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ("session", "privilege", "duration")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGE_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    privilege: str
    duration: _duration_pb2.Duration
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., privilege: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class PromoteResponse(_message.Message):
    __slots__ = ("promotion", "sequence")
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    promotion: Promotion
    sequence: int
    def __init__(self, promotion: _Optional[_Union[Promotion, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class DemoteRequest(_message.Message):
    __slots__ = ("session", "promotion_id")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_ID_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    promotion_id: str
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., promotion_id: _Optional[str] = ...) -> None: ...

class DemoteResponse(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class GetStorageRequest(_message.Message):
    __slots__ = ("session", "keys")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class GetStorageResponse(_message.Message):
    __slots__ = ("values", "version")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    values: _containers.MessageMap[str, _struct_pb2.Value]
    version: int
    def __init__(self, values: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., version: _Optional[int] = ...) -> None: ...

class PutStorageRequest(_message.Message):
    __slots__ = ("session", "values", "expected_version")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    SESSION_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    values: _containers.MessageMap[str, _struct_pb2.Value]
    expected_version: int
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., values: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class PutStorageResponse(_message.Message):
    __slots__ = ("version", "sequence")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    version: int
    sequence: int
    def __init__(self, version: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class DeleteStorageRequest(_message.Message):
    __slots__ = ("session", "keys", "expected_version")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    keys: _containers.RepeatedScalarFieldContainer[str]
    expected_version: int
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteStorageResponse(_message.Message):
    __slots__ = ("version", "sequence")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    version: int
    sequence: int
    def __init__(self, version: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class ClearStorageRequest(_message.Message):
    __slots__ = ("session", "expected_version")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    expected_version: int
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class ClearStorageResponse(_message.Message):
    __slots__ = ("version", "sequence")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    version: int
    sequence: int
    def __init__(self, version: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("level", "message", "exception", "stack_trace", "client_time")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_FIELD_NUMBER: _ClassVar[int]
    STACK_TRACE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TIME_FIELD_NUMBER: _ClassVar[int]
    level: LogLevel
    message: str
    exception: str
    stack_trace: str
    client_time: _timestamp_pb2.Timestamp
    def __init__(self, level: _Optional[_Union[LogLevel, str]] = ..., message: _Optional[str] = ..., exception: _Optional[str] = ..., stack_trace: _Optional[str] = ..., client_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LogRequest(_message.Message):
    __slots__ = ("session", "entries", "request_id")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    request_id: str
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class LogResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class StreamLogRequest(_message.Message):
    __slots__ = ("session", "entries", "request_id")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    session: SessionRef
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    request_id: str
    def __init__(self, session: _Optional[_Union[SessionRef, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class StreamLogResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class QueryLogsRequest(_message.Message):
    __slots__ = ("session_id", "user_id", "kind", "start_time", "end_time", "min_level", "failed_only", "slow_only", "page_size", "page_token", "endpoint")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MIN_LEVEL_FIELD_NUMBER: _ClassVar[int]
    FAILED_ONLY_FIELD_NUMBER: _ClassVar[int]
    SLOW_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    user_id: str
    kind: SessionKind
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    min_level: LogLevel
    failed_only: bool
    slow_only: bool
    page_size: int
    page_token: str
    endpoint: str
    def __init__(self, session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., kind: _Optional[_Union[SessionKind, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., min_level: _Optional[_Union[LogLevel, str]] = ..., failed_only: _Optional[bool] = ..., slow_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., endpoint: _Optional[str] = ...) -> None: ...

class LogRecord(_message.Message):
    __slots__ = ("log_id", "session_id", "user_id", "kind", "level", "message", "exception", "stack_trace", "client_time", "logged_at", "sequence", "endpoint")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_FIELD_NUMBER: _ClassVar[int]
    STACK_TRACE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TIME_FIELD_NUMBER: _ClassVar[int]
    LOGGED_AT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    session_id: str
    user_id: str
    kind: SessionKind
    level: LogLevel
    message: str
    exception: str
    stack_trace: str
    client_time: _timestamp_pb2.Timestamp
    logged_at: _timestamp_pb2.Timestamp
    sequence: int
    endpoint: str
    def __init__(self, log_id: _Optional[str] = ..., session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., kind: _Optional[_Union[SessionKind, str]] = ..., level: _Optional[_Union[LogLevel, str]] = ..., message: _Optional[str] = ..., exception: _Optional[str] = ..., stack_trace: _Optional[str] = ..., client_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., logged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ..., endpoint: _Optional[str] = ...) -> None: ...

class QueryLogsResponse(_message.Message):
    __slots__ = ("records", "next_page_token", "cursor")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[LogRecord]
    next_page_token: str
    cursor: str
    def __init__(self, records: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., cursor: _Optional[str] = ...) -> None: ...

class FollowLogsRequest(_message.Message):
    __slots__ = ("session_id", "user_id", "kind", "start_time", "end_time", "min_level", "failed_only", "slow_only", "cursor", "endpoint")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MIN_LEVEL_FIELD_NUMBER: _ClassVar[int]
    FAILED_ONLY_FIELD_NUMBER: _ClassVar[int]
    SLOW_ONLY_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    user_id: str
    kind: SessionKind
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    min_level: LogLevel
    failed_only: bool
    slow_only: bool
    cursor: str
    endpoint: str
    def __init__(self, session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., kind: _Optional[_Union[SessionKind, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., min_level: _Optional[_Union[LogLevel, str]] = ..., failed_only: _Optional[bool] = ..., slow_only: _Optional[bool] = ..., cursor: _Optional[str] = ..., endpoint: _Optional[str] = ...) -> None: ...

class FollowLogsResponse(_message.Message):
    __slots__ = ("records", "cursor")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[LogRecord]
    cursor: str
    def __init__(self, records: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ..., cursor: _Optional[str] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetServerInfoResponse(_message.Message):
    __slots__ = ("version", "build_profile", "build_target", "store", "schema_version", "started_at")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BUILD_PROFILE_FIELD_NUMBER: _ClassVar[int]
    BUILD_TARGET_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    version: str
    build_profile: str
    build_target: str
    store: StoreKind
    schema_version: int
    started_at: _timestamp_pb2.Timestamp
    def __init__(self, version: _Optional[str] = ..., build_profile: _Optional[str] = ..., build_target: _Optional[str] = ..., store: _Optional[_Union[StoreKind, str]] = ..., schema_version: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
