"""WSGI middleware: one Authenticate per request, identity in environ, 401 to sign in again."""

from sessiond import Client, LoginRequired


class SessiondMiddleware:
    """Wraps a WSGI app. Reads the token from the `session` cookie (or
    `Authorization: Bearer`), asks sessiond who it is and whether it holds
    `privileges`, and puts the `sessiond.Identity` in environ["sessiond.identity"].
    No token or one to sign in again with: 401, or a redirect to `sign_in_url`
    when given; a privilege missing: 403."""

    def __init__(self, app, client: Client, *privileges: str, cookie: str = "session", sign_in_url: str = ""):
        self.app, self.client, self.privileges, self.cookie = app, client, privileges, cookie
        self.sign_in_url = sign_in_url

    def __call__(self, environ, start_response):
        try:
            identity = self.client.authenticate(self._token(environ), *self.privileges)
        except LoginRequired as error:
            if self.sign_in_url:
                start_response("302 Found", [("Location", self.sign_in_url)])
                return [b""]
            return self._refuse(start_response, "401 Unauthorized", f"sign in again ({error.reason})")
        if not identity.all_granted:
            return self._refuse(start_response, "403 Forbidden", "forbidden")
        environ["sessiond.identity"] = identity
        return self.app(environ, start_response)

    def _token(self, environ) -> str:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header.startswith("Bearer "):
            return header[len("Bearer "):]
        for part in environ.get("HTTP_COOKIE", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie:
                return value
        return ""  # authenticate answers TOKEN_MISSING: LoginRequired

    @staticmethod
    def _refuse(start_response, status: str, body: str):
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [body.encode()]
