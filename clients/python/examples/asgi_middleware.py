"""ASGI middleware: one Authenticate per request, identity in scope, 401 to sign in again."""

from sessiond import AsyncClient, LoginRequired


class SessiondMiddleware:
    """Wraps an ASGI app (Starlette, FastAPI, …). Reads the token from the
    `session` cookie (or `Authorization: Bearer`), asks sessiond who it is and
    whether it holds `privileges`, and puts the `sessiond.Identity` in
    scope["state"]["identity"] (Starlette: request.state.identity).
    No token or one to sign in again with: 401, or a redirect to `sign_in_url`
    when given; a privilege missing: 403."""

    def __init__(self, app, client: AsyncClient, *privileges: str, cookie: str = "session",
                 sign_in_url: str = ""):
        self.app, self.client, self.privileges, self.cookie = app, client, privileges, cookie
        self.sign_in_url = sign_in_url

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            identity = await self.client.authenticate(self._token(scope), *self.privileges)
        except LoginRequired as error:
            if self.sign_in_url:
                return await self._refuse(send, 302, "", [(b"location", self.sign_in_url.encode())])
            return await self._refuse(send, 401, f"sign in again ({error.reason})")
        if not identity.all_granted:
            return await self._refuse(send, 403, "forbidden")
        scope.setdefault("state", {})["identity"] = identity
        await self.app(scope, receive, send)

    def _token(self, scope) -> str:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        if headers.get("authorization", "").startswith("Bearer "):
            return headers["authorization"][len("Bearer "):]
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie:
                return value
        return ""  # authenticate answers TOKEN_MISSING: LoginRequired

    @staticmethod
    async def _refuse(send, status: int, body: str, headers=()):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), *headers]})
        await send({"type": "http.response.body", "body": body.encode()})
