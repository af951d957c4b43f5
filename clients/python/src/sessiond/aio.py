"""The asyncio client."""

from __future__ import annotations

import asyncio
import copy
import inspect
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Optional, Sequence, Union

import grpc
import grpc.aio

from . import _channel
from ._channel import Timeout
from ._operations import Operations, SessionLike, backoff, changes
from ._subscription import AsyncSubscription
from .errors import VersionConflict, from_rpc_error
from .types import Event, Kind, Storage

if TYPE_CHECKING:
    from typing_extensions import Concatenate, ParamSpec, TypeVar

    _P = ParamSpec("_P")
    _R = TypeVar("_R")

    def _awaited(method: Callable[Concatenate[Any, _P], _R]) -> Callable[Concatenate[Any, _P], Awaitable[_R]]:
        ...

#: fn of AsyncClient.update_storage: plain or async.
Update = Callable[[dict[str, Any]], Union[Optional[Mapping[str, Any]], Awaitable[Optional[Mapping[str, Any]]]]]


class AsyncClient(Operations):
    """The asyncio twin of `Client`: the same methods and arguments, each awaited.

    Create it inside the event loop that uses it; ``async with`` or
    ``await client.close()`` closes its channel.
    """

    def __init__(
        self,
        address: str,
        *,
        api_key: Optional[str] = None,
        tls: Optional[bool] = None,
        ca_file: Optional[str] = None,
        cert_file: Optional[str] = None,
        key_file: Optional[str] = None,
        timeout: Timeout = 10.0,
        options: Sequence[tuple[str, Any]] = (),
    ):
        creds = _channel.credentials(tls, ca_file, cert_file, key_file)
        options = list(options)
        self._channel = (grpc.aio.secure_channel(address, creds, options) if creds
                         else grpc.aio.insecure_channel(address, options))
        self._stubs = _channel.stubs(self._channel)
        self._metadata = _channel.metadata(api_key)
        self._timeout = _channel.seconds(timeout)

    if TYPE_CHECKING:
        # The shared methods, as type checkers should see them here: each awaited.
        create_session = _awaited(Operations.create_session)  # type: ignore[assignment]
        authenticate = _awaited(Operations.authenticate)  # type: ignore[assignment]
        get_session = _awaited(Operations.get_session)  # type: ignore[assignment]
        touch_session = _awaited(Operations.touch_session)  # type: ignore[assignment]
        close_session = _awaited(Operations.close_session)  # type: ignore[assignment]
        list_sessions = _awaited(Operations.list_sessions)  # type: ignore[assignment]
        revoke_sessions = _awaited(Operations.revoke_sessions)  # type: ignore[assignment]
        has_privilege = _awaited(Operations.has_privilege)  # type: ignore[assignment]
        check_privileges = _awaited(Operations.check_privileges)  # type: ignore[assignment]
        get_privileges = _awaited(Operations.get_privileges)  # type: ignore[assignment]
        set_privileges = _awaited(Operations.set_privileges)  # type: ignore[assignment]
        clear_privileges = _awaited(Operations.clear_privileges)  # type: ignore[assignment]
        promote = _awaited(Operations.promote)  # type: ignore[assignment]
        demote = _awaited(Operations.demote)  # type: ignore[assignment]
        get_storage = _awaited(Operations.get_storage)  # type: ignore[assignment]
        put_storage = _awaited(Operations.put_storage)  # type: ignore[assignment]
        delete_storage = _awaited(Operations.delete_storage)  # type: ignore[assignment]
        clear_storage = _awaited(Operations.clear_storage)  # type: ignore[assignment]
        log = _awaited(Operations.log)  # type: ignore[assignment]
        query_logs = _awaited(Operations.query_logs)  # type: ignore[assignment]
        post = _awaited(Operations.post)  # type: ignore[assignment]

    def with_timeout(self, timeout: Timeout) -> "AsyncClient":
        """This client, on the same channel, with another per-call deadline."""
        other = copy.copy(self)
        other._timeout = _channel.seconds(timeout)
        return other

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.close()

    async def _invoke(self, service: str, method: str, request: Any, convert: Callable[[Any], Any]) -> Any:
        try:
            answer = await getattr(self._stubs[service], method)(
                request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error
        return convert(answer)

    async def update_storage(self, session: SessionLike, fn: Update, *keys: str, attempts: int = 10) -> Storage:
        """Compare-and-set with retries, as `Client.update_storage`; `fn` may be async."""
        for attempt in range(1, attempts + 1):
            current = await self.get_storage(session, *keys)
            values = copy.deepcopy(current.values)
            returned = fn(values)
            if inspect.isawaitable(returned):
                returned = await returned
            changed, removed = changes(current, values if returned is None else returned)
            try:
                if changed:
                    written = await self.put_storage(session, changed, expected_version=current.version)
                elif removed:
                    written = await self.delete_storage(session, *removed, expected_version=current.version)
                else:
                    return current
            except VersionConflict:
                if attempt == attempts:
                    raise
                await asyncio.sleep(backoff(attempt))
                continue
            values = {k: v for k, v in {**current.values, **changed}.items() if k not in removed}
            return Storage(values, written.version)
        raise AssertionError("unreachable: attempts must be at least 1")

    async def watch_sessions(
        self,
        *,
        session_id: str = "",
        user_id: str = "",
        kind: Optional[Union[Kind, str]] = None,
        after_sequence: Optional[int] = None,
        timeout: Timeout = None,
    ) -> AsyncIterator[Event]:
        """Lifecycle events as an async iterator, as `Client.watch_sessions`."""
        request = self._watch_request(session_id, user_id, kind, after_sequence)
        stream = self._stubs["sessions"].WatchSessions(request, timeout=_channel.seconds(timeout),
                                                       metadata=self._metadata)
        try:
            async for event in stream:
                yield Event.from_proto(event)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error
        finally:
            stream.cancel()

    async def subscribe(
        self,
        channels: Union[str, Iterable[str]],
        *,
        after_sequence: Optional[Union[int, Mapping[str, int]]] = None,
        timeout: Timeout = None,
    ) -> AsyncSubscription:
        """Follows channels, as `Client.subscribe`; iterate the answer with ``async for``."""
        request = self._subscribe_request(channels, after_sequence)
        call = self._stubs["messages"].Subscribe(request, timeout=_channel.seconds(timeout), metadata=self._metadata)
        return await AsyncSubscription(call)._start()
