"""Security headers on every response (pure ASGI middleware).

Every response: ``X-Content-Type-Options: nosniff`` (a JSON body is never sniffed into HTML)
and ``Referrer-Policy: same-origin`` (a query in the URL does not leak to a runbook's site).
HTML pages also get a Content-Security-Policy that allows scripts only from this server's
own files -- a label value or monitor description that slipped past escaping still could
not run -- and may not be framed (``frame-ancestors 'none'``: no clickjacking of the
silence and drill buttons). Styles may be inline: Plotly sets them on its elements.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_ALWAYS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
_HTML = [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY")]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                extra = [h for h in _ALWAYS if h[0] not in have]
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html"):
                    extra += [h for h in _HTML if h[0] not in have]
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, with_headers)
