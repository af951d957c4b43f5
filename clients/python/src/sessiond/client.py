"""The blocking client."""

from __future__ import annotations

import copy
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import grpc

from . import _channel
from ._channel import Timeout
from ._operations import Operations, SessionLike, backoff, changes
from ._subscription import Subscription
from .errors import VersionConflict, from_rpc_error
from .types import Event, Kind, Storage


class Client(Operations):
    """A blocking sessiond client over one gRPC channel; safe to share between threads.

    ``Client("localhost:50051", api_key=KEY)``: every call sends
    ``authorization: Bearer KEY`` and has a deadline of `timeout` (default
    10 s; `with_timeout` gives a copy with another). TLS: `ca_file` (or
    ``tls=True`` for the system roots), `cert_file` and `key_file` for mTLS.
    Failures raise `sessiond.SessiondError` subclasses.
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
        self._channel = (grpc.secure_channel(address, creds, options) if creds
                         else grpc.insecure_channel(address, options))
        self._stubs = _channel.stubs(self._channel)
        self._metadata = _channel.metadata(api_key)
        self._timeout = _channel.seconds(timeout)

    def with_timeout(self, timeout: Timeout) -> "Client":
        """This client, on the same channel, with another per-call deadline."""
        other = copy.copy(self)
        other._timeout = _channel.seconds(timeout)
        return other

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _invoke(self, service: str, method: str, request: Any, convert: Callable[[Any], Any]) -> Any:
        try:
            answer = getattr(self._stubs[service], method)(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error
        return convert(answer)

    def update_storage(
        self,
        session: SessionLike,
        fn: Callable[[dict[str, Any]], Optional[Mapping[str, Any]]],
        *keys: str,
        attempts: int = 10,
    ) -> Storage:
        """Compare-and-set: reads the storage (or `keys`), applies `fn` to a copy, writes
        with the version read, and starts again on a VersionConflict.

        `fn` changes the dict in place or returns the new values; it may run
        several times, so it must not have other effects. Raises the last
        VersionConflict after `attempts` tries. Answers the values written
        (those read with fn's changes) and their version.
        """
        for attempt in range(1, attempts + 1):
            current = self.get_storage(session, *keys)
            values = copy.deepcopy(current.values)
            returned = fn(values)
            changed, removed = changes(current, values if returned is None else returned)
            try:
                if changed:
                    written = self.put_storage(session, changed, expected_version=current.version)
                elif removed:
                    written = self.delete_storage(session, *removed, expected_version=current.version)
                else:
                    return current
            except VersionConflict:
                if attempt == attempts:
                    raise
                time.sleep(backoff(attempt))
                continue
            values = {k: v for k, v in {**current.values, **changed}.items() if k not in removed}
            return Storage(values, written.version)
        raise AssertionError("unreachable: attempts must be at least 1")

    def watch_sessions(
        self,
        *,
        session_id: str = "",
        user_id: str = "",
        kind: Optional[Union[Kind, str]] = None,
        after_sequence: Optional[int] = None,
        timeout: Timeout = None,
    ) -> Iterator[Event]:
        """Lifecycle events as they happen (after `after_sequence` first, when given).

        Runs until the iterator is closed or `timeout` passes (default: no
        deadline). Without session_id or user_id it needs an admin key.
        """
        request = self._watch_request(session_id, user_id, kind, after_sequence)
        stream = self._stubs["sessions"].WatchSessions(request, timeout=_channel.seconds(timeout),
                                                       metadata=self._metadata)
        try:
            for event in stream:
                yield Event.from_proto(event)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error
        finally:
            stream.cancel()

    def subscribe(
        self,
        channels: Union[str, Iterable[str]],
        *,
        after_sequence: Optional[Union[int, Mapping[str, int]]] = None,
        timeout: Timeout = None,
    ) -> Subscription:
        """Follows one channel or several; returns once the subscription is in place.

        Iterate the answer for `Message` and `SessionEnd` items; the
        iteration stops after a final SessionEnd (a `session:` channel's
        session ended) or `close()`. `after_sequence` (for every channel, or
        a dict by channel) first replays the kept messages after it; unset:
        live only. No deadline unless `timeout`. Raises `CursorExpired` or
        `CursorAhead` for a cursor that cannot be served, here or while
        iterating, and `SubscriberTooSlow` when cut off for falling behind.
        """
        request = self._subscribe_request(channels, after_sequence)
        call = self._stubs["messages"].Subscribe(request, timeout=_channel.seconds(timeout), metadata=self._metadata)
        return Subscription(call)
