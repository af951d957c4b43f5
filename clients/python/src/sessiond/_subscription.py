"""An open Subscribe stream, blocking (`Subscription`) and asyncio (`AsyncSubscription`).

Both are made only once sessiond has answered the stream's first item,
`subscribed`: from then on every message posted to the channels reaches
the subscription. Iterating one yields `Message` and `SessionEnd` items;
the iteration stops after a final `SessionEnd` (a `session:` channel's
session ended), and after `close()`. A refusal or a cut-off raises its
`SessiondError` (`CursorExpired`, `SubscriberTooSlow`, …).
"""

from __future__ import annotations

from typing import Any, Optional, Union

import grpc
import grpc.aio

from .errors import from_rpc_error
from .types import Message, SessionEnd
from .v1 import messages_pb2 as mpb

Item = Union[Message, SessionEnd]


def _item(response: mpb.SubscribeResponse) -> Optional[Item]:
    """The item a response carries; None for one this client does not surface (`subscribed`)."""
    which = response.WhichOneof("item")
    if which == "message":
        return Message.from_proto(response.message)
    if which == "session_ended":
        return SessionEnd.from_proto(response.session_ended)
    return None


class Subscription:
    """A blocking subscription: ``for item in subscription`` yields `Message` and `SessionEnd`.

    `channels` are the channels followed, as named. ``close()`` (or leaving a
    ``with`` block) cancels the stream and ends the iteration.
    """

    def __init__(self, call: Any):
        self._call = call
        self._closed = False
        try:
            first = next(call)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error
        #: The channels followed, as named in the request.
        self.channels: list[str] = list(first.subscribed.channels)

    def __iter__(self) -> "Subscription":
        return self

    def __next__(self) -> Item:
        while True:
            try:
                response = next(self._call)
            except grpc.RpcError as error:
                if self._closed and error.code() == grpc.StatusCode.CANCELLED:
                    raise StopIteration from None
                raise from_rpc_error(error) from error
            item = _item(response)
            if item is not None:
                return item

    def close(self) -> None:
        """Cancels the stream; iterating afterwards stops at once."""
        self._closed = True
        self._call.cancel()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


class AsyncSubscription:
    """An asyncio subscription: ``async for item in subscription``; otherwise as `Subscription`."""

    def __init__(self, call: Any):
        self._call = call
        self._closed = False
        #: The channels followed, as named in the request.
        self.channels: list[str] = []

    async def _start(self) -> "AsyncSubscription":
        first = await self._read()
        self.channels = list(first.subscribed.channels) if first is not None else []
        return self

    async def _read(self) -> Optional[mpb.SubscribeResponse]:
        try:
            response = await self._call.read()
        except grpc.RpcError as error:
            if self._closed and error.code() == grpc.StatusCode.CANCELLED:
                return None
            raise from_rpc_error(error) from error
        return None if response is grpc.aio.EOF else response

    def __aiter__(self) -> "AsyncSubscription":
        return self

    async def __anext__(self) -> Item:
        while True:
            if self._closed:
                raise StopAsyncIteration
            response = await self._read()
            if response is None:
                raise StopAsyncIteration
            item = _item(response)
            if item is not None:
                return item

    async def close(self) -> None:
        """Cancels the stream; iterating afterwards stops at once."""
        self._closed = True
        self._call.cancel()

    async def __aenter__(self) -> "AsyncSubscription":
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.close()

