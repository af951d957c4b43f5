"""The web-login flow of examples/web_login.py, and the middleware examples, against sessiond."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest

from sessiond import AsyncClient, LoginRequired, SessionEnded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import asgi_middleware  # noqa: E402
import web_login  # noqa: E402
import wsgi_middleware  # noqa: E402


def test_a_user_signs_in_fills_a_cart_and_after_signing_out_must_sign_in_again(client, server):
    token = web_login.sign_in(client, "alice")
    assert web_login.add_to_cart(client, token, "book") == ["book"]
    assert web_login.add_to_cart(client, token, "pen") == ["book", "pen"]
    assert client.get_storage(token).values == {"cart": ["book", "pen"]}
    session_id = client.get_session(token).session_id
    web_login.sign_out(client, token)

    with pytest.raises(SessionEnded) as ended:
        web_login.add_to_cart(client, token, "lamp")
    assert isinstance(ended.value, LoginRequired)
    assert (ended.value.reason, ended.value.end_reason) == ("SESSION_CLOSED", "closed")

    with server.client("acme-admin") as admin:
        messages = [r.message for r in admin.query_logs(session_id=session_id).records]
    assert messages == ["alice added book to the cart", "alice added pen to the cart"]


def test_the_example_runs_as_a_script(server, capsys):
    web_login.main(server.address, server.keys["acme"])
    assert capsys.readouterr().out.splitlines() == [
        "['book'] ['book', 'pen']",
        "sign in again: SESSION_CLOSED",
    ]


def test_a_session_without_the_privilege_may_not_add_to_the_cart(client):
    token = client.create_session("web_user", user_id="victor", roles=["Viewer"], storage={"cart": []}).token
    with pytest.raises(PermissionError):
        web_login.add_to_cart(client, token, "book")
    assert client.get_storage(token).values == {"cart": []}


def _wsgi(app, **environ):
    answer = {}
    body = app({"wsgi.input": io.BytesIO(), **environ},
               lambda status, headers: answer.update(status=status, headers=headers))
    if answer["status"].startswith("302"):
        return answer["status"], dict(answer["headers"])["Location"]
    return answer["status"], b"".join(body).decode()


def test_the_wsgi_middleware_puts_the_identity_on_the_request_and_answers_401_to_sign_in_again(client):
    def app(environ, start_response):
        start_response("200 OK", [])
        return [f"hello {environ['sessiond.identity'].user_id}".encode()]

    wrapped = wsgi_middleware.SessiondMiddleware(app, client, "viewSales")
    token = client.create_session("web_user", user_id="wanda", roles=["Manager"]).token
    viewer = client.create_session("web_user", user_id="walt", roles=["Viewer"]).token

    assert _wsgi(wrapped, HTTP_COOKIE=f"theme=dark; session={token}") == ("200 OK", "hello wanda")
    assert _wsgi(wrapped, HTTP_AUTHORIZATION=f"Bearer {token}") == ("200 OK", "hello wanda")
    assert _wsgi(wrapped, HTTP_COOKIE=f"session={viewer}") == ("403 Forbidden", "forbidden")
    assert _wsgi(wrapped) == ("401 Unauthorized", "sign in again (TOKEN_MISSING)")
    assert _wsgi(wrapped, HTTP_COOKIE="session=nonsense") == ("401 Unauthorized", "sign in again (TOKEN_MALFORMED)")
    client.close_session(token)
    assert _wsgi(wrapped, HTTP_COOKIE=f"session={token}") == ("401 Unauthorized", "sign in again (SESSION_CLOSED)")
    redirecting = wsgi_middleware.SessiondMiddleware(app, client, sign_in_url="/sign-in")
    assert _wsgi(redirecting, HTTP_COOKIE=f"session={viewer}") == ("200 OK", "hello walt")
    assert _wsgi(redirecting, HTTP_COOKIE=f"session={token}") == ("302 Found", "/sign-in")


async def _asgi(app, headers):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}, receive, send)
    if sent[0]["status"] == 302:
        return 302, dict(sent[0]["headers"])[b"location"].decode()
    return sent[0]["status"], sent[1]["body"].decode()


async def test_the_asgi_middleware_puts_the_identity_on_the_request_and_answers_401_to_sign_in_again(server):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": f"hello {scope['state']['identity'].user_id}".encode()})

    async with AsyncClient(server.address, api_key=server.keys["acme"]) as client:
        wrapped = asgi_middleware.SessiondMiddleware(app, client, "viewSales")
        token = (await client.create_session("web_user", user_id="xena", roles=["Manager"])).token
        viewer = (await client.create_session("web_user", user_id="xavier", roles=["Viewer"])).token

        assert await _asgi(wrapped, {"cookie": f"session={token}"}) == (200, "hello xena")
        assert await _asgi(wrapped, {"authorization": f"Bearer {token}"}) == (200, "hello xena")
        assert await _asgi(wrapped, {"cookie": f"session={viewer}"}) == (403, "forbidden")
        assert await _asgi(wrapped, {}) == (401, "sign in again (TOKEN_MISSING)")
        await client.revoke_sessions(user_id="xena")
        assert await _asgi(wrapped, {"cookie": f"session={token}"}) == (401, "sign in again (SESSION_REVOKED)")
        redirecting = asgi_middleware.SessiondMiddleware(app, client, sign_in_url="/sign-in")
        assert await _asgi(redirecting, {"cookie": f"session={token}"}) == (302, "/sign-in")
