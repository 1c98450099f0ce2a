"""Routes answer with and without a trailing slash.

The seed's clients use both spellings; FastAPI's answer to the other one is a 307 with an empty
body, which urllib and plain ``curl`` do not follow (a POST is then silently lost). Instead, a
path no route takes is tried with the slash toggled, before routing.
"""

from __future__ import annotations

from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["BothSlashes"]


class BothSlashes:
    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "/")
        if scope["type"] in ("http", "websocket") and path != "/" and not self._routed(scope):
            other = path[:-1] if path.endswith("/") else path + "/"
            toggled = {**scope, "path": other, "raw_path": other.encode()}
            if self._routed(toggled):
                scope = toggled
        await self.app(scope, receive, send)

    def _routed(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is not Match.NONE for route in self.router.routes)
