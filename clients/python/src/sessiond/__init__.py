"""sessiond's Python client: sessions, privileges, storage, logs and messages over gRPC.

    from sessiond import Client
    with Client("localhost:50051", api_key=KEY) as client:
        created = client.create_session("web_user", user_id="alice", roles=["Manager"])
        who = client.authenticate(created.token, "viewSales")

`Client` blocks; `sessiond.aio.AsyncClient` (also exported here) is its
asyncio twin. Failures are `SessiondError` subclasses (`sessiond.errors`).
"""

from .aio import AsyncClient
from .client import Client
from ._subscription import AsyncSubscription, Subscription
from .errors import (
    CursorAhead,
    CursorExpired,
    CursorOutOfRange,
    DeadlineExceeded,
    InvalidArgument,
    LoginRequired,
    PermissionDenied,
    ResourceExhausted,
    SessionEnded,
    SessiondError,
    SessionNotFound,
    SubscriberTooSlow,
    Unauthenticated,
    Unavailable,
    VersionConflict,
)
from .types import (
    Check,
    Closed,
    CreatedSession,
    EndReason,
    Event,
    EventType,
    Identity,
    Kind,
    Labels,
    LogEntry,
    LogLevel,
    LogPage,
    LogRecord,
    Message,
    Posted,
    Privileges,
    Promotion,
    Revoked,
    Scope,
    Session,
    SessionEnd,
    SessionId,
    SessionPage,
    State,
    Storage,
    Written,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient", "Client",
    "SessiondError", "LoginRequired", "SessionNotFound", "SessionEnded", "VersionConflict",
    "PermissionDenied", "Unauthenticated", "InvalidArgument", "ResourceExhausted", "Unavailable",
    "DeadlineExceeded", "SubscriberTooSlow", "CursorOutOfRange", "CursorExpired", "CursorAhead",
    "Subscription", "AsyncSubscription", "Message", "Posted", "Scope", "SessionEnd",
    "Check", "Closed", "CreatedSession", "EndReason", "Event", "EventType", "Identity", "Kind", "Labels",
    "LogEntry", "LogLevel", "LogPage", "LogRecord", "Privileges", "Promotion", "Revoked", "Session",
    "SessionId", "SessionPage", "State", "Storage", "Written",
]
