"""sessiond's failures as exception types.

Every call raises a `SessiondError` subclass, never a bare `grpc.RpcError`
(the original is the exception's `__cause__`). Each carries the gRPC
`code`, the `google.rpc.ErrorInfo` `reason` and `metadata` (domain
sessiond.dev) when the answer had one, and the server's `message`::

    SessiondError
    ├── LoginRequired          the user must sign in again (reason says why)
    │   ├── SessionNotFound    no such session (for this tenant)
    │   └── SessionEnded       closed, expired or revoked (end_reason)
    ├── VersionConflict        storage moved on (current_version)
    ├── PermissionDenied       the API key's role may not do this
    ├── Unauthenticated        the API key (or client certificate) was refused
    ├── InvalidArgument        a field was invalid (violations)
    ├── ResourceExhausted      a limit was reached
    │   └── SubscriberTooSlow  a subscription fell too far behind and was cut off
    ├── CursorOutOfRange       a subscription's after_sequence cannot be served
    │   ├── CursorExpired      messages after it are no longer kept
    │   └── CursorAhead        it is beyond the channel's last message
    ├── Unavailable            sessiond or its store cannot answer now; retry
    └── DeadlineExceeded       no answer within the call's deadline
"""

from __future__ import annotations

from typing import Optional

import grpc
from google.rpc import error_details_pb2, status_pb2

_DETAILS_KEY = "grpc-status-details-bin"

#: Authenticate's reasons to sign in again that name no session state.
_TOKEN_REASONS = {"TOKEN_MISSING", "TOKEN_MALFORMED"}
#: The reasons of an ended session (metadata end_reason).
_ENDED_REASONS = {"SESSION_CLOSED", "SESSION_EXPIRED", "SESSION_REVOKED"}


class SessiondError(Exception):
    """A call failed. Every sessiond error is one of these."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "",
                 metadata: Optional[dict[str, str]] = None,
                 violations: Optional[list[tuple[str, str]]] = None):
        super().__init__(f"{code.name}: {message}" + (f" ({reason})" if reason else ""))
        #: The gRPC status code.
        self.code = code
        #: The server's message.
        self.message = message
        #: The google.rpc.ErrorInfo reason, e.g. "SESSION_EXPIRED"; "" when none.
        self.reason = reason
        #: The ErrorInfo metadata, e.g. {"end_reason": "expired"}.
        self.metadata = metadata or {}
        #: google.rpc.BadRequest's field violations: (field, description) pairs.
        self.violations = violations or []


class LoginRequired(SessiondError):
    """The token cannot be used: the user must sign in again. `reason` says why:
    TOKEN_MISSING, TOKEN_MALFORMED, SESSION_NOT_FOUND, SESSION_CLOSED,
    SESSION_EXPIRED or SESSION_REVOKED."""


class SessionNotFound(LoginRequired):
    """No session of the caller's tenant has that token or id."""


class SessionEnded(LoginRequired):
    """The session has ended; `end_reason` says how ("closed", "expired", "revoked", …)."""

    @property
    def end_reason(self) -> str:
        return self.metadata.get("end_reason", "")


class VersionConflict(SessiondError):
    """A storage write named an expected version that is no longer current."""

    @property
    def current_version(self) -> Optional[int]:
        value = self.metadata.get("current_version")
        return int(value) if value is not None else None


class PermissionDenied(SessiondError):
    """The calling service's role may not do this (e.g. QueryLogs needs an admin key)."""


class Unauthenticated(SessiondError):
    """The calling service's own credentials were refused: reason API_KEY_MISSING,
    API_KEY_INVALID or CLIENT_CERTIFICATE_UNKNOWN."""


class InvalidArgument(SessiondError):
    """The request was invalid; `violations` names each field."""


class ResourceExhausted(SessiondError):
    """A limit was reached (storage of a session full, too many calls)."""


class SubscriberTooSlow(ResourceExhausted):
    """A subscription fell more than --message-subscriber-buffer messages behind and was
    cut off (reason SUBSCRIBER_TOO_SLOW); subscribe again from the last sequence received."""


class CursorOutOfRange(SessiondError):
    """OUT_OF_RANGE for a subscription's after_sequence: `channel`, and the channel's
    `oldest_sequence` (the oldest kept) and `latest_sequence`."""

    @property
    def channel(self) -> str:
        return self.metadata.get("channel", "")

    @property
    def oldest_sequence(self) -> Optional[int]:
        value = self.metadata.get("oldest_sequence")
        return int(value) if value is not None else None

    @property
    def latest_sequence(self) -> Optional[int]:
        value = self.metadata.get("latest_sequence")
        return int(value) if value is not None else None


class CursorExpired(CursorOutOfRange):
    """Messages after the cursor are no longer kept (CURSOR_EXPIRED): messages were
    missed; read the state needed and subscribe again from `latest_sequence`."""


class CursorAhead(CursorOutOfRange):
    """The cursor is beyond the channel's last message (CURSOR_AHEAD)."""


class Unavailable(SessiondError):
    """sessiond or its store could not answer; the call may be retried."""


class DeadlineExceeded(SessiondError):
    """No answer within the call's deadline."""


_BY_CODE = {
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


#: Subscribe's refusals of an after_sequence (OUT_OF_RANGE), by reason.
_CURSOR_REASONS: dict[str, type[SessiondError]] = {"CURSOR_EXPIRED": CursorExpired, "CURSOR_AHEAD": CursorAhead}


def _error_type(code: grpc.StatusCode, reason: str) -> type[SessiondError]:
    if reason == "SESSION_NOT_FOUND" and code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.NOT_FOUND):
        return SessionNotFound
    if reason in _ENDED_REASONS and code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.FAILED_PRECONDITION):
        return SessionEnded
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return LoginRequired if reason in _TOKEN_REASONS else Unauthenticated
    if code == grpc.StatusCode.ABORTED and reason == "VERSION_CONFLICT":
        return VersionConflict
    if code == grpc.StatusCode.OUT_OF_RANGE and reason in _CURSOR_REASONS:
        return _CURSOR_REASONS[reason]
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and reason == "SUBSCRIBER_TOO_SLOW":
        return SubscriberTooSlow
    return _BY_CODE.get(code, SessiondError)


def from_rpc_error(error: grpc.RpcError) -> SessiondError:
    """The typed error for a failed call (grpc.RpcError or grpc.aio.AioRpcError)."""
    code = error.code()
    message = error.details() or ""
    reason, metadata, violations = "", {}, []
    for key, value in error.trailing_metadata() or ():
        if key != _DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = [(v.field, v.description) for v in bad.field_violations]
    return _error_type(code, reason)(code, message, reason, metadata, violations)
