"""sessiond's Python client: sessions, privileges, storage and logs over gRPC.

    from sessiond import Client
    with Client("localhost:50051", api_key=KEY) as client:
        created = client.create_session("web_user", user_id="alice", roles=["Manager"])
        who = client.authenticate(created.token, "viewSales")

`Client` blocks; `sessiond.aio.AsyncClient` (also exported here) is its
asyncio twin. Failures are `SessiondError` subclasses (`sessiond.errors`).
"""

from .aio import AsyncClient
from .client import Client
from .errors import (
    DeadlineExceeded,
    InvalidArgument,
    LoginRequired,
    PermissionDenied,
    ResourceExhausted,
    SessionEnded,
    SessiondError,
    SessionNotFound,
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
    Privileges,
    Promotion,
    Revoked,
    Session,
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
    "DeadlineExceeded",
    "Check", "Closed", "CreatedSession", "EndReason", "Event", "EventType", "Identity", "Kind", "Labels",
    "LogEntry", "LogLevel", "LogPage", "LogRecord", "Privileges", "Promotion", "Revoked", "Session",
    "SessionId", "SessionPage", "State", "Storage", "Written",
]
