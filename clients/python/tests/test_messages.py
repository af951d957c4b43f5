"""Messages through the client: post, subscribe, replay, a session channel's end, refusals."""

from __future__ import annotations

import uuid

import pytest

from sessiond import (
    CursorAhead,
    EndReason,
    InvalidArgument,
    Message,
    Posted,
    Scope,
    SessionEnd,
    SessionNotFound,
)


def _channel() -> str:
    """A channel no other test follows (they share one sessiond)."""
    return f"test/{uuid.uuid4().hex[:12]}"


def test_a_subscriber_receives_a_post_as_plain_values(client):
    channel = _channel()
    with client.subscribe(channel) as subscription:
        assert subscription.channels == [channel]
        payload = {"from": "alice", "text": "hello", "n": 3, "ratio": 0.5, "tags": ["a", None, True]}
        posted = client.post(channel, payload, type_name="chat.Line")
        assert posted == Posted(sequence=1, local_deliveries=1)
        message = next(subscription)
    assert isinstance(message, Message)
    assert (message.channel, message.sequence, message.payload, message.type_name, message.scope) == (
        channel, 1, payload, "chat.Line", Scope.GLOBAL)
    assert message.posted_at is not None and message.posted_at.tzinfo is not None
    assert list(subscription) == []  # closed: the iteration stops


def test_local_messages_are_not_numbered_and_any_json_value_is_a_payload(client):
    channel = _channel()
    with client.subscribe([channel]) as subscription:
        assert client.post(channel, None, scope="local").sequence == 0
        assert client.post(channel, "two", scope=Scope.LOCAL).sequence == 0
        assert client.post(channel, [1, 2]).sequence == 1
        received = [next(subscription) for _ in range(3)]
    assert [(m.sequence, m.payload, m.scope) for m in received] == [
        (0, None, Scope.LOCAL), (0, "two", Scope.LOCAL), (1, [1, 2], Scope.GLOBAL)]


def test_after_sequence_replays_the_kept_messages_then_live_ones(client):
    channel, other = _channel(), _channel()
    for n in range(1, 4):
        client.post(channel, n)
    with client.subscribe([channel, other], after_sequence={channel: 1}) as subscription:
        assert subscription.channels == [channel, other]
        replayed = [next(subscription) for _ in range(2)]
        client.post(other, "live")
        live = next(subscription)
    assert [(m.sequence, m.payload) for m in replayed] == [(2, 2), (3, 3)]
    assert (live.channel, live.sequence, live.payload) == (other, 1, "live")


def test_a_cursor_beyond_the_last_message_is_cursor_ahead(client):
    channel = _channel()
    client.post(channel, "only")
    with pytest.raises(CursorAhead) as refused:
        client.subscribe(channel, after_sequence=5)
    assert (refused.value.channel, refused.value.oldest_sequence, refused.value.latest_sequence) == (channel, 1, 1)


def test_a_session_channel_ends_with_a_final_session_end_when_the_session_closes(client):
    created = client.create_session("web_user", user_id=f"u-{uuid.uuid4().hex[:8]}")
    session_id = created.session.session_id
    user_channel = f"user:{created.session.user_id}"
    with client.subscribe(user_channel) as user_subscription:
        subscription = client.subscribe(f"session:{session_id}")
        client.post(f"session:{session_id}", {"kick": True})
        assert next(subscription).payload == {"kick": True}
        client.close_session(created.token)
        items = list(subscription)  # stops by itself after the final item
        assert items == [SessionEnd(f"session:{session_id}", session_id, EndReason.CLOSED, final=True)]
        assert next(user_subscription) == SessionEnd(user_channel, session_id, EndReason.CLOSED, final=False)


def test_refusals_are_typed(client):
    with pytest.raises(InvalidArgument) as refused:
        client.post("no-such-kind:x", 1)
    assert refused.value.violations and refused.value.violations[0][0] == "channel"
    with pytest.raises(SessionNotFound):
        client.subscribe(f"session:{'0' * 32}")
    with pytest.raises(TypeError):
        client.post(_channel(), object())


async def test_the_async_client_subscribes_and_posts(server):
    from sessiond import AsyncClient

    channel = _channel()
    async with AsyncClient(server.address, api_key=server.keys["acme"]) as client:
        async with await client.subscribe(channel) as subscription:
            assert subscription.channels == [channel]
            assert (await client.post(channel, {"x": 1}, type_name="t")).local_deliveries == 1
            async for item in subscription:
                assert (item.channel, item.sequence, item.payload, item.type_name) == (channel, 1, {"x": 1}, "t")
                break
        created = await client.create_session("web_user", user_id="async-msg")
        subscription = await client.subscribe(f"session:{created.session.session_id}")
        await client.close_session(created.token)
        items = [item async for item in subscription]
        assert [(i.final, i.end_reason) for i in items] == [(True, EndReason.CLOSED)]
