"""The web console at `/console`: static files from this package, read once at start-up.

The page is plain HTML + CSS + a few ES modules (no build step, no CDN). It holds no data of its own:
it calls the account API (`/api/*`) and, in the Playground, the OpenAI routes. Signing in with name +
password gets the API's `tb_session` cookie (HttpOnly, SameSite=Strict, Path=/api: the page's script
never sees it); the admin token or a key's secret is kept in the tab's `sessionStorage` and sent as
`Authorization: Bearer`, never in a URL. The headers below keep the page from running anything but
its own scripts and from being framed.
"""

from __future__ import annotations

from importlib.resources import files

from starlette.routing import Route

from tokenbridge.asgi import Receive, Scope, Send

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

JAVASCRIPT = "text/javascript; charset=utf-8"

# path -> (file in this package, media type); the modules import one another by these paths
FILES: dict[str, tuple[str, str]] = {
    "/console": ("index.html", "text/html; charset=utf-8"),
    "/console/": ("index.html", "text/html; charset=utf-8"),
    "/console/main.js": ("main.js", JAVASCRIPT),
    "/console/core.js": ("core.js", JAVASCRIPT),
    "/console/chart.js": ("chart.js", JAVASCRIPT),
    "/console/snippets.js": ("snippets.js", JAVASCRIPT),
    "/console/account.js": ("account.js", JAVASCRIPT),
    "/console/keys.js": ("keys.js", JAVASCRIPT),
    "/console/usage.js": ("usage.js", JAVASCRIPT),
    "/console/playground.js": ("playground.js", JAVASCRIPT),
    "/console/admin.js": ("admin.js", JAVASCRIPT),
    "/console/console.css": ("console.css", "text/css; charset=utf-8"),
}


class StaticFile:
    """One file's bytes and headers, built once; answers GET and HEAD."""

    def __init__(self, body: bytes, media_type: str) -> None:
        self.body = body
        self.headers = [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else self.body})


def console_routes() -> list[Route]:
    """The console's routes, its files read now (a missing file fails the start, not a request)."""
    package = files(__name__)
    return [
        Route(path, StaticFile(package.joinpath(name).read_bytes(), media), methods=["GET", "HEAD"])
        for path, (name, media) in FILES.items()
    ]
