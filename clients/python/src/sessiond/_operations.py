"""The calls sessiond serves, as one set of methods shared by Client and AsyncClient.

Each method builds its request and names the conversion of its answer;
`_invoke` (blocking in Client, a coroutine in AsyncClient) makes the call
and maps a failure to its `SessiondError`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from . import types as t
from .types import Duration, Kind, LogEntry, LogLevel, Scope, SessionId, State
from .v1 import messages_pb2 as mpb
from .v1 import sessiond_pb2 as pb

#: A session as a call names it: its token (a plain str), its id (SessionId),
#: a Session answered earlier (by id), or a SessionRef (with min_sequence).
SessionLike = Union[str, SessionId, t.Session, pb.SessionRef]


def session_ref(session: SessionLike) -> pb.SessionRef:
    if isinstance(session, pb.SessionRef):
        return session
    if isinstance(session, t.Session):
        return pb.SessionRef(session_id=session.session_id)
    if isinstance(session, SessionId):
        return pb.SessionRef(session_id=session)
    if isinstance(session, str):
        return pb.SessionRef(token=session)
    raise TypeError(f"a session is named by its token (str) or a SessionId, not {type(session).__name__}")


#: A proto enum's UNSPECIFIED value.
_UNSET: Any = 0


def _kind(kind: Optional[Union[Kind, str]]) -> Any:  # a proto enum number
    return Kind.parse(kind).to_proto() if kind else _UNSET


def _entry(entry: Union[str, LogEntry]) -> pb.LogEntry:
    return (LogEntry(entry) if isinstance(entry, str) else entry).to_proto()


def _identity(privileges: tuple[str, ...]) -> Callable[[pb.AuthenticateResponse], t.Identity]:
    def convert(a: pb.AuthenticateResponse) -> t.Identity:
        return t.Identity(
            session_id=SessionId(a.session_id), user_id=a.user_id, tenant=a.tenant,
            kind=Kind.from_proto(a.kind), roles=tuple(a.roles),
            expires_at=t.from_timestamp(a, "expires_at"),
            granted=dict(zip(privileges, a.granted)), all_granted=a.all_granted, trusted=a.trusted,
        )
    return convert


def _written(answer) -> t.Written:
    return t.Written(answer.version, answer.sequence)


def _storage(answer: pb.GetStorageResponse) -> t.Storage:
    return t.Storage(t.from_values(answer.values), answer.version)


class Operations:
    """Every sessiond call. `_invoke(service, method, request, convert)` is the transport."""

    def _invoke(self, service: str, method: str, request: Any, convert: Callable[[Any], Any]):
        raise NotImplementedError

    # --- sessions ---------------------------------------------------------

    def create_session(
        self,
        kind: Union[Kind, str],
        *,
        user_id: str = "",
        roles: Iterable[str] = (),
        privileges: Iterable[str] = (),
        idle_timeout: Optional[Duration] = None,
        lifetime: Optional[Duration] = None,
        storage: Optional[Mapping[str, Any]] = None,
        labels: Optional[t.Labels] = None,
        trusted: bool = False,
        request_id: str = "",
    ) -> t.CreatedSession:
        """Starts a session; answers its secret token (shown only now) and the session.

        Unset timeouts take the kind's defaults; a zero duration means none.
        `request_id` (a random UUID) makes a retry answer the first create.
        """
        request = pb.CreateSessionRequest(
            kind=_kind(kind), user_id=user_id, roles=list(roles), privileges=list(privileges),
            trusted=trusted, request_id=request_id,
        )
        if idle_timeout is not None:
            request.idle_timeout.CopyFrom(t.to_duration(idle_timeout))
        if lifetime is not None:
            request.lifetime.CopyFrom(t.to_duration(lifetime))
        for key, value in (storage or {}).items():
            request.storage[key].CopyFrom(t.to_value(value))
        if labels is not None:
            request.labels.CopyFrom(pb.SessionLabels(**labels.__dict__))
        return self._invoke("sessions", "CreateSession", request, lambda a: t.CreatedSession(
            a.token, t.Session.from_proto(a.session), a.sequence))

    def authenticate(self, token: str, *privileges: str, min_sequence: int = 0) -> t.Identity:
        """Who the token's session is, and whether it holds each privilege: one call per request.

        Counts as activity. Raises `LoginRequired` (or its subtypes
        `SessionNotFound`, `SessionEnded`) when the user must sign in again.
        """
        request = pb.AuthenticateRequest(token=token, privileges=list(privileges), min_sequence=min_sequence)
        return self._invoke("sessions", "Authenticate", request, _identity(privileges))

    def get_session(self, session: SessionLike) -> t.Session:
        """The session, by token or id. Counts as activity."""
        request = pb.GetSessionRequest(session=session_ref(session))
        return self._invoke("sessions", "GetSession", request, lambda a: t.Session.from_proto(a.session))

    def touch_session(self, session: SessionLike) -> Optional[datetime]:
        """Marks activity; answers when the session now expires (None: never)."""
        request = pb.TouchSessionRequest(session=session_ref(session))
        return self._invoke("sessions", "TouchSession", request, lambda a: t.from_timestamp(a, "expires_at"))

    def close_session(self, session: SessionLike, *, error: str = "", stack_trace: str = "") -> t.Closed:
        """Ends the session (failed when `error` is given). Closing again answers the same."""
        request = pb.CloseSessionRequest(session=session_ref(session), error=error, stack_trace=stack_trace)
        return self._invoke("sessions", "CloseSession", request, lambda a: t.Closed(
            SessionId(a.session_id), t.EndReason.from_proto(a.end_reason), a.log_id))

    def list_sessions(
        self,
        *,
        user_id: str = "",
        kind: Optional[Union[Kind, str]] = None,
        state: Optional[Union[State, str]] = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> t.SessionPage:
        """Sessions, newest first, one page at a time. Without user_id it needs an admin key."""
        request = pb.ListSessionsRequest(
            user_id=user_id, kind=_kind(kind), state=State.parse(state).to_proto() if state else _UNSET,
            page_size=page_size, page_token=page_token,
        )
        return self._invoke("sessions", "ListSessions", request, lambda a: t.SessionPage(
            [t.Session.from_proto(s) for s in a.sessions], a.next_page_token))

    def revoke_sessions(
        self, *, user_id: str = "", kind: Optional[Union[Kind, str]] = None, session_ids: Iterable[str] = ()
    ) -> t.Revoked:
        """Ends every open session matching the filters (at least one) with reason revoked."""
        request = pb.RevokeSessionsRequest(user_id=user_id, kind=_kind(kind), session_ids=list(session_ids))
        return self._invoke("sessions", "RevokeSessions", request, lambda a: t.Revoked(
            [SessionId(s) for s in a.session_ids], a.sequence))

    @staticmethod
    def _watch_request(session_id: str, user_id: str, kind, after_sequence: Optional[int]) -> pb.WatchSessionsRequest:
        request = pb.WatchSessionsRequest(session_id=session_id, user_id=user_id, kind=_kind(kind))
        if after_sequence is not None:
            request.after_sequence = after_sequence
        return request

    # --- privileges -------------------------------------------------------

    def has_privilege(self, session: SessionLike, privilege: str) -> bool:
        request = pb.HasPrivilegeRequest(session=session_ref(session), privilege=privilege)
        return self._invoke("privileges", "HasPrivilege", request, lambda a: a.granted)

    def check_privileges(self, session: SessionLike, *privileges: str, mode: str = "all") -> t.Check:
        """Whether the session holds all (mode="all") or any (mode="any") of the privileges."""
        request = pb.CheckPrivilegesRequest(
            session=session_ref(session), privileges=list(privileges),
            mode=pb.CheckMode.Value("CHECK_MODE_" + mode.upper()),
        )
        return self._invoke("privileges", "CheckPrivileges", request, lambda a: t.Check(
            a.granted, dict(zip(privileges, a.held))))

    def get_privileges(self, session: SessionLike) -> t.Privileges:
        request = pb.GetPrivilegesRequest(session=session_ref(session))
        return self._invoke("privileges", "GetPrivileges", request, lambda a: t.Privileges(
            list(a.privileges), list(a.granted_privileges), list(a.roles),
            [t.Promotion.from_proto(p) for p in a.promotions], a.trusted))

    def set_privileges(
        self, session: SessionLike, *, privileges: Iterable[str] = (), roles: Iterable[str] = ()
    ) -> list[str]:
        """Replaces the session's privileges and roles; answers every privilege now held."""
        request = pb.SetPrivilegesRequest(session=session_ref(session), privileges=list(privileges), roles=list(roles))
        return self._invoke("privileges", "SetPrivileges", request, lambda a: list(a.privileges))

    def clear_privileges(self, session: SessionLike) -> int:
        """Removes every privilege, role and promotion; answers the event's sequence."""
        request = pb.ClearPrivilegesRequest(session=session_ref(session))
        return self._invoke("privileges", "ClearPrivileges", request, lambda a: a.sequence)

    def promote(self, session: SessionLike, privilege: str, duration: Duration) -> t.Promotion:
        """Grants `privilege` for `duration`; demote with the answer's promotion_id."""
        request = pb.PromoteRequest(session=session_ref(session), privilege=privilege,
                                    duration=t.to_duration(duration))
        return self._invoke("privileges", "Promote", request, lambda a: t.Promotion.from_proto(a.promotion))

    def demote(self, session: SessionLike, promotion_id: str) -> int:
        """Ends a promotion early (idempotent); answers the event's sequence (0: no change)."""
        request = pb.DemoteRequest(session=session_ref(session), promotion_id=promotion_id)
        return self._invoke("privileges", "Demote", request, lambda a: a.sequence)

    # --- storage ----------------------------------------------------------

    def get_storage(self, session: SessionLike, *keys: str) -> t.Storage:
        """The named keys (none: every key) and the storage's version."""
        request = pb.GetStorageRequest(session=session_ref(session), keys=list(keys))
        return self._invoke("storage", "GetStorage", request, _storage)

    def put_storage(
        self, session: SessionLike, values: Mapping[str, Any], *, expected_version: Optional[int] = None
    ) -> t.Written:
        """Sets keys. With expected_version, raises VersionConflict unless the storage is at it."""
        request = pb.PutStorageRequest(session=session_ref(session))
        for key, value in values.items():
            request.values[key].CopyFrom(t.to_value(value))
        if expected_version is not None:
            request.expected_version = expected_version
        return self._invoke("storage", "PutStorage", request, _written)

    def delete_storage(self, session: SessionLike, *keys: str, expected_version: Optional[int] = None) -> t.Written:
        request = pb.DeleteStorageRequest(session=session_ref(session), keys=list(keys))
        if expected_version is not None:
            request.expected_version = expected_version
        return self._invoke("storage", "DeleteStorage", request, _written)

    def clear_storage(self, session: SessionLike, *, expected_version: Optional[int] = None) -> t.Written:
        request = pb.ClearStorageRequest(session=session_ref(session))
        if expected_version is not None:
            request.expected_version = expected_version
        return self._invoke("storage", "ClearStorage", request, _written)

    # --- logs -------------------------------------------------------------

    def log(self, session: SessionLike, *entries: Union[str, LogEntry], request_id: str = "") -> int:
        """Appends entries (a str is an info entry); answers how many were kept."""
        request = pb.LogRequest(session=session_ref(session), entries=[_entry(e) for e in entries],
                                request_id=request_id)
        return self._invoke("logs", "Log", request, lambda a: a.accepted)

    def query_logs(
        self,
        *,
        session_id: str = "",
        user_id: str = "",
        kind: Optional[Union[Kind, str]] = None,
        start_time: Optional[datetime] = None,
        end_time: Optional[datetime] = None,
        min_level: Optional[Union[LogLevel, str]] = None,
        failed_only: bool = False,
        slow_only: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> t.LogPage:
        """Entries of kept logs (closed sessions), one page at a time. Needs an admin key."""
        request = pb.QueryLogsRequest(
            session_id=session_id, user_id=user_id, kind=_kind(kind),
            min_level=LogLevel.parse(min_level).to_proto() if min_level else _UNSET,
            failed_only=failed_only, slow_only=slow_only, page_size=page_size, page_token=page_token,
        )
        if start_time is not None:
            request.start_time.CopyFrom(t.to_timestamp(start_time))
        if end_time is not None:
            request.end_time.CopyFrom(t.to_timestamp(end_time))
        return self._invoke("logs", "QueryLogs", request, lambda a: t.LogPage(
            [t.LogRecord.from_proto(r) for r in a.records], a.next_page_token))


    # --- messages ---------------------------------------------------------

    def post(
        self, channel: str, payload: Any, *, scope: Optional[Union[Scope, str]] = None, type_name: str = ""
    ) -> t.Posted:
        """Posts `payload` (any JSON-like Python value, None included) to `channel`.

        `channel` is a name of the tenant's own (``"chat/room-42"``),
        ``"session:ID"`` or ``"user:ID"``; `scope` "global" (the default:
        numbered, kept for replay, every replica) or "local" (this replica's
        subscribers only). Answers the message's sequence and how many
        subscriptions of this replica it was handed to.
        """
        request = mpb.PostRequest(channel=channel, payload=t.to_value(payload), type_name=type_name,
                                  scope=Scope.parse(scope).to_proto() if scope else _UNSET)
        return self._invoke("messages", "Post", request, lambda a: t.Posted(a.sequence, a.local_deliveries))

    @staticmethod
    def _subscribe_request(
        channels: Union[str, Iterable[str]], after_sequence: Optional[Union[int, Mapping[str, int]]]
    ) -> mpb.SubscribeRequest:
        names = [channels] if isinstance(channels, str) else list(channels)
        request = mpb.SubscribeRequest()
        for name in names:
            channel = request.channels.add(channel=name)
            after = after_sequence.get(name) if isinstance(after_sequence, Mapping) else after_sequence
            if after is not None:
                channel.after_sequence = after
        return request


def changes(current: t.Storage, new: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """What update_storage writes: the keys changed or added in `new`, and the keys it removed."""
    changed = {key: value for key, value in new.items() if key not in current.values or current.values[key] != value}
    removed = [key for key in current.values if key not in new]
    if changed and removed:
        raise ValueError("update_storage: fn both changed and removed keys; a write does one or the other")
    return changed, removed


def backoff(attempt: int) -> float:
    """Seconds to wait before retry `attempt` (1, 2, …) of a conflicted write: jittered, at most 50 ms."""
    import random

    return random.uniform(0, min(0.05, 0.002 * 2 ** attempt))
