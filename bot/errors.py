"""Errors become responses in one place: a JianbaoError by the status on its class, aiohttp's own HTTP
errors as they are (404, 405, 413...), anything else as a bare 500. A client never sees a stack trace:
bodies are one line of text (or JSON for /api), and the details go to the log.

Logs name a request by its route's template (`/unsubscribe/{token}`), never by its path: paths hold
tokens (unsubscribe links never expire), and a log is read by more people than a token should be."""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from content.errors import JianbaoError, TooManyRequests

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# The console is read in a browser: its refusals are a page with the same one line and a way back.
_CONSOLE_ERROR = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{status} · 编辑台</title><link rel="stylesheet" href="/static/console.css"></head>
<body><main><h1>{status}</h1><p class="problem" role="alert">{message}</p>
<p><a href="/console">回到编辑台</a></p></main></body></html>
"""


def _body(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": message}, status=status)
    if request.path == "/console" or request.path.startswith("/console/"):
        page = _CONSOLE_ERROR.format(status=status, message=html.escape(message))
        return web.Response(status=status, text=page, content_type="text/html")
    return web.Response(status=status, text=message + "\n")


def _error_response(request: web.Request, error: JianbaoError) -> web.Response:
    response = _body(request, error.status, error.message)
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except JianbaoError as error:
        if error.status >= 500:
            log.error("%s %s: %s", request.method, route_template(request), error.message)
        return _error_response(request, error)
    except web.HTTPException as error:
        if error.status >= 400 and error.text and error.text.startswith(f"{error.status}:"):
            response = _body(request, error.status, error.reason)  # aiohttp's default bodies, one line
            if "Allow" in error.headers:  # a 405 must say which methods the resource takes (RFC 9110)
                response.headers["Allow"] = error.headers["Allow"]
            return response
        raise
    except RequestPayloadError:
        # The body ended early or does not decode as its Content-Encoding says: the client's fault,
        # whichever handler was reading it.
        return _body(request, 400, "the request body could not be read")
    except Exception:
        log.exception("%s %s failed", request.method, route_template(request))
        return _body(request, 500, "internal error")


def route_template(request: web.Request) -> str:
    """The route a request matched, as declared (`/confirm/{token}`), or "(no route)"."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"
