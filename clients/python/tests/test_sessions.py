"""Sessions, privileges, logs, events and tenants through the client."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from sessiond import (
    AsyncClient,
    EndReason,
    EventType,
    Kind,
    LogEntry,
    LogLevel,
    SessionId,
    SessionEnded,
    SessionNotFound,
    State,
)


def test_authenticate_answers_who_and_each_privilege_asked_in_order(client):
    created = client.create_session(Kind.WEB_USER, user_id="ann", roles=["Viewer"],
                                    idle_timeout=timedelta(minutes=30), lifetime=3600)
    session = created.session
    assert (session.kind, session.user_id, session.state, session.idle_timeout) == (
        Kind.WEB_USER, "ann", State.OPEN, timedelta(minutes=30))
    assert session.lifetime == timedelta(hours=1)
    who = client.authenticate(created.token, "viewBasic", "editSales")
    assert (who.session_id, who.user_id, who.tenant, who.kind, who.roles) == (
        session.session_id, "ann", "acme", Kind.WEB_USER, ("viewer",))
    assert who.granted == {"viewBasic": True, "editSales": False} and not who.all_granted
    assert who.expires_at > datetime.now(timezone.utc)
    assert client.authenticate(created.token).all_granted  # nothing asked


def test_sessions_are_named_by_token_or_id_and_listed(client):
    created = client.create_session("web_user", user_id="bea")
    by_id = client.get_session(created.session.session_id)
    assert by_id.session_id == client.get_session(created.token).session_id
    assert client.touch_session(SessionId(by_id.session_id)) > datetime.now(timezone.utc)
    assert client.get_session(by_id).user_id == "bea"
    page = client.list_sessions(user_id="bea")
    assert [s.session_id for s in page.sessions] == [created.session.session_id]
    closed = client.close_session(created.session.session_id, error="boom")
    assert closed.end_reason == EndReason.FAILED
    with pytest.raises(SessionEnded):
        client.get_session(created.token)
    assert client.list_sessions(user_id="bea", state="ended").sessions[0].end_reason == EndReason.FAILED


def test_privileges_are_set_checked_promoted_and_demoted(client):
    token = client.create_session("web_user", user_id="cid", privileges=["viewBasic"]).token
    assert client.has_privilege(token, "viewBasic") and not client.has_privilege(token, "editSales")
    assert client.set_privileges(token, roles=["Manager"]) == ["editsales", "viewbasic", "viewsales"]
    check = client.check_privileges(token, "admin", "viewSales", mode="any")
    assert check.granted and check.held == {"admin": False, "viewSales": True}
    assert not client.check_privileges(token, "admin", "viewSales").granted
    promotion = client.promote(token, "admin", timedelta(minutes=5))
    assert client.has_privilege(token, "admin")
    held = client.get_privileges(token)
    assert [p.promotion_id for p in held.promotions] == [promotion.promotion_id]
    assert held.roles == ["manager"]
    assert client.demote(token, promotion.promotion_id) > 0
    assert not client.has_privilege(token, "admin")
    assert client.clear_privileges(token) > 0
    assert client.get_privileges(token).privileges == []


def test_logs_are_written_and_queried_with_an_admin_key(client, server):
    token = client.create_session("web_call", user_id="dora").token
    at = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    assert client.log(token, "cart opened",
                      LogEntry("price lookup slow", level=LogLevel.WARNING, client_time=at)) == 2
    session_id = client.close_session(token).session_id
    with server.client("acme-admin") as admin:
        records = admin.query_logs(session_id=session_id).records
        assert [(r.level, r.message) for r in records] == [
            (LogLevel.INFO, "cart opened"), (LogLevel.WARNING, "price lookup slow")]
        assert records[1].client_time == at and records[0].user_id == "dora"
        assert [r.message for r in admin.query_logs(session_id=session_id, min_level="warning").records] == [
            "price lookup slow"]


def test_watch_sessions_streams_the_events_of_a_user(client):
    first = client.create_session("web_user", user_id="eve")
    events = client.watch_sessions(user_id="eve", after_sequence=first.sequence - 1, timeout=10)
    assert next(events).type == EventType.CREATED
    client.put_storage(first.token, {"a": 1})
    client.close_session(first.token)
    assert [next(events).type for _ in range(2)] == [EventType.STORAGE_CHANGED, EventType.CLOSED]
    events.close()


async def test_the_async_client_watches_too(server):
    async with AsyncClient(server.address, api_key=server.keys["acme"]) as client:
        created = await client.create_session("web_user", user_id="fay")
        events = client.watch_sessions(session_id=created.session.session_id, after_sequence=0, timeout=10)
        event = await events.__anext__()
        assert (event.type, event.session_id, event.kind) == (EventType.CREATED, created.session.session_id,
                                                               Kind.WEB_USER)
        await events.aclose()


def test_another_tenants_key_does_not_see_the_session(client, server):
    created = client.create_session("web_user", user_id="gail")
    with server.client("globex") as other:
        with pytest.raises(SessionNotFound):
            other.authenticate(created.token)
        with pytest.raises(SessionNotFound):
            other.get_session(created.session.session_id)
        assert other.list_sessions(user_id="gail").sessions == []
        own = other.create_session("web_user", user_id="gail")
        assert other.authenticate(own.token).tenant == "globex"
    assert client.authenticate(created.token).tenant == "acme"


def test_one_client_serves_many_threads(client):
    token = client.create_session("web_user", user_id="hank", roles=["Viewer"]).token
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(client.authenticate(token, "viewBasic").all_granted))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [True] * 8
