"""Each error type, produced for real by a sessiond."""

from __future__ import annotations

import time

import grpc
import pytest

from conftest import STORAGE_MAX_KEYS, _free_port
from sessiond import (
    AsyncClient,
    Client,
    DeadlineExceeded,
    InvalidArgument,
    LoginRequired,
    PermissionDenied,
    ResourceExhausted,
    SessionEnded,
    SessiondError,
    SessionId,
    SessionNotFound,
    Unauthenticated,
    Unavailable,
)


def test_every_token_the_user_cannot_use_is_login_required_with_its_reason(client):
    for token, reason in [("", "TOKEN_MISSING"), ("not-a-token", "TOKEN_MALFORMED")]:
        with pytest.raises(LoginRequired) as refused:
            client.authenticate(token)
        assert type(refused.value) is LoginRequired
        assert (refused.value.code, refused.value.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason)

    created = client.create_session("web_user", user_id="olga")
    forged = created.token[:-4] + ("AAAA" if not created.token.endswith("AAAA") else "BBBB")
    with pytest.raises(SessionNotFound) as unknown:
        client.authenticate(forged)
    assert unknown.value.reason == "SESSION_NOT_FOUND"

    client.close_session(created.token)
    with pytest.raises(SessionEnded) as closed:
        client.authenticate(created.token)
    assert (closed.value.reason, closed.value.end_reason) == ("SESSION_CLOSED", "closed")

    revoked = client.create_session("web_user", user_id="oscar")
    client.revoke_sessions(session_ids=[revoked.session.session_id])
    with pytest.raises(SessionEnded) as ended:
        client.authenticate(revoked.token)
    assert (ended.value.reason, ended.value.end_reason) == ("SESSION_REVOKED", "revoked")

    short = client.create_session("web_call", idle_timeout=1)  # the shortest there is
    time.sleep(1.5)  # real time must pass: the server runs on its own clock
    with pytest.raises(SessionEnded) as expired:
        client.authenticate(short.token)
    assert (expired.value.reason, expired.value.end_reason) == ("SESSION_EXPIRED", "idle_timeout")


def test_other_calls_raise_the_same_types_under_their_own_codes(client):
    with pytest.raises(SessionNotFound) as unknown:
        client.get_session(SessionId("f" * 32))
    assert unknown.value.code == grpc.StatusCode.NOT_FOUND

    token = client.create_session("web_user", user_id="pia").token
    client.close_session(token)
    with pytest.raises(SessionEnded) as ended:
        client.put_storage(token, {"a": 1})
    assert (ended.value.code, ended.value.end_reason) == (grpc.StatusCode.FAILED_PRECONDITION, "closed")


def test_a_service_key_may_not_query_logs(client):
    with pytest.raises(PermissionDenied) as denied:
        client.query_logs()
    assert denied.value.reason == "ADMIN_ROLE_REQUIRED"


def test_a_missing_or_unknown_api_key_is_unauthenticated_not_login_required(server):
    with Client(server.address) as anonymous, pytest.raises(Unauthenticated) as missing:
        anonymous.authenticate("whatever")
    assert missing.value.reason == "API_KEY_MISSING"
    with Client(server.address, api_key="sdk_wrong") as wrong, pytest.raises(Unauthenticated) as invalid:
        wrong.create_session("web_user")
    assert invalid.value.reason == "API_KEY_INVALID"
    assert not isinstance(invalid.value, LoginRequired)


def test_an_invalid_request_names_its_fields(client):
    token = client.create_session("web_user", user_id="quinn").token
    with pytest.raises(InvalidArgument) as invalid:
        client.authenticate(token, "viewSales", "noSuchPrivilege")
    assert [field for field, _ in invalid.value.violations] == ["privileges[1]"]
    with pytest.raises(InvalidArgument) as too_short:
        client.create_session("web_user", idle_timeout=0.5)
    assert [field for field, _ in too_short.value.violations] == ["idle_timeout"]


def test_a_full_session_is_resource_exhausted(client):
    token = client.create_session("web_user", user_id="rita").token
    client.put_storage(token, {f"key{i}": i for i in range(STORAGE_MAX_KEYS)})
    with pytest.raises(ResourceExhausted):
        client.put_storage(token, {"one-more": 1})


def test_no_server_is_unavailable():
    with Client(f"127.0.0.1:{_free_port()}", timeout=5) as nowhere, pytest.raises(Unavailable):
        nowhere.get_session("token")


def test_a_server_that_cannot_answer_in_time_is_deadline_exceeded(server):
    with server.client(timeout=0.3) as client:
        token = client.create_session("web_user", user_id="sam").token  # connected
        with server.stopped(), pytest.raises(DeadlineExceeded) as late:
            client.authenticate(token)
        assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert client.with_timeout(5).authenticate(token).user_id == "sam"  # answers again


async def test_the_async_client_raises_the_same_types(server):
    async with AsyncClient(server.address, api_key=server.keys["acme"], timeout=0.3) as client:
        with pytest.raises(LoginRequired):
            await client.authenticate("")
        token = (await client.create_session("web_user", user_id="tom")).token
        with server.stopped(), pytest.raises(DeadlineExceeded):
            await client.authenticate(token)
        await client.close_session(token)
        with pytest.raises(SessionEnded) as ended:
            await client.with_timeout(5).get_storage(token)
        assert ended.value.end_reason == "closed"
    assert issubclass(DeadlineExceeded, SessiondError)
