"""The admin API described as OpenAPI 3.1, served at GET /api/openapi.json behind the admin token
(bot/admin.py registers `openapi_document` wrapped in `require_admin`; this module cannot import
bot.admin, which imports it).

The document is data, written by hand beside the routes it describes (bot/admin.py, bot/broadcast/routes.py)
rather than generated: aiohttp routes carry no schemas to generate it from. tests/bot/test_openapi.py
keeps the two in step (every /api route the app registers is described, nothing else is), and
scripts/fuzz_routes.py runs schemathesis against it, which checks that every answer matches it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from bot.services import SERVICES
from storage.broadcasts import BroadcastState, DeliveryState
from storage.subscribers import SubscriberStatus

OPENAPI_PATH = "/api/openapi.json"
JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return _json_body(_ref("Error"), description) | extra


def _counts(keys: list[str], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "propertyNames": {"enum": keys},
        "additionalProperties": {"type": "integer", "minimum": 0},
    }


# A broadcast's figures on one channel (storage/broadcast_stats.py), with what each counts.
_CHANNEL_FIGURES = {
    "sent": "deliveries sent (the uncertain ones included)",
    "failed": "deliveries that failed for another reason than blocked or bounced",
    "blocked": "deliveries the platform refused: the subscriber blocked us",
    "bounced": "deliveries the mail server refused (hard bounce)",
    "skipped": "deliveries never sent (topics, 48 h window, cancelled)",
    "uncertain": "sent, but a timeout left it open: maybe delivered, never resent",
    "clicks": "counted clicks on the issue's links on this channel",
    "unique_clicks": "clickers counted once per link",
}
_ISO_TIME = {"type": "string", "description": "ISO 8601 time in UTC, e.g. 2020-07-03T00:00:00+00:00"}


def _schemas(channels: Sequence[str]) -> dict[str, Any]:
    """The schemas; which channels exist is the registry's (plug-ins included), so they are built per app."""
    _CHANNEL = {"type": "string", "enum": list(channels)}
    return {
        "Error": {
            "type": "object",
            "description": "Every refusal: one line saying what was wrong.",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
            "additionalProperties": False,
        },
        "Status": {
            "type": "object",
            "required": ["issues", "items", "subscribers", "channels", "sending"],
            "properties": {
                "issues": {"type": "integer", "minimum": 0, "description": "issues stored"},
                "items": {"type": "integer", "minimum": 0, "description": "items in the search index"},
                "subscribers": {
                    "type": "object",
                    "description": "subscribers per channel and status",
                    "required": list(channels),
                    "additionalProperties": False,
                    "properties": {
                        channel: _counts(
                            [state.value for state in SubscriberStatus], f"{channel} subscribers"
                        )
                        for channel in channels
                    },
                },
                "sending": {
                    "type": "object",
                    "description": 'per registered channel: "on" when it can send broadcasts, or why not',
                    "required": list(channels),
                    "additionalProperties": False,
                    "properties": {channel: {"type": "string"} for channel in channels},
                },
                "channels": {
                    "type": "object",
                    "description": (
                        'per chat or sign-up feature (WeChat webhook, Telegram bot, email form): "on", or '
                        "why it is off"
                    ),
                    "additionalProperties": {"type": "string"},
                },
            },
            "additionalProperties": False,
        },
        "CreateBroadcast": {
            "type": "object",
            "description": "Start broadcasting an issue (the same as `jianbao broadcast send`).",
            "required": ["date"],
            "properties": {
                "date": {"type": "string", "format": "date", "description": "the issue's date, YYYY-MM-DD"},
                "channels": {
                    "description": "channels to send on; absent or empty: every channel that can send",
                    "oneOf": [_CHANNEL, {"type": "array", "items": _CHANNEL}],
                },
                "at": {
                    # RFC 3339 date-times are what clients should send; the API also takes "2026-12-01 08:00"
                    # (ISO 8601, no zone) for editors typing by hand. null is the same as absent: now.
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": (
                        'when to start, e.g. "2026-12-01T08:00:00+08:00"; "2026-12-01 08:00" (no zone) is in '
                        "JIANBAO_TIMEZONE; absent or past: now"
                    ),
                },
                "wechat_text": {
                    "type": "boolean",
                    "description": "also customer-service texts to WeChat followers inside their 48 h window",
                },
                "dry_run": {
                    "type": "boolean",
                    "description": "count the audience and size the payloads only",
                },
            },
            "additionalProperties": False,
        },
        "Broadcast": {
            "type": "object",
            "required": [
                "id",
                "date",
                "channels",
                "state",
                "options",
                "start_at",
                "created_at",
                "finished_at",
            ],
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "date": {"type": "string", "format": "date"},
                "channels": {"type": "array", "items": _CHANNEL},
                "state": {"type": "string", "enum": [state.value for state in BroadcastState]},
                "options": {"type": "object"},
                "start_at": _ISO_TIME,
                "created_at": _ISO_TIME,
                "finished_at": {"oneOf": [_ISO_TIME, {"type": "null"}]},
            },
        },
        "StartedBroadcast": {
            "allOf": [
                _ref("Broadcast"),
                {
                    "type": "object",
                    "required": ["added_pending", "added_skipped"],
                    "properties": {
                        "added_pending": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "deliveries this request queued",
                        },
                        "added_skipped": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "deliveries recorded as skipped (topics, a channel rule)",
                        },
                    },
                },
            ]
        },
        "BroadcastStatus": {
            "allOf": [
                _ref("Broadcast"),
                {
                    "type": "object",
                    "required": [
                        "counts",
                        "total",
                        "unfinished",
                        "uncertain",
                        "rate_per_second",
                        "eta_seconds",
                    ],
                    "properties": {
                        "counts": {
                            "type": "object",
                            "description": "deliveries per channel and state",
                            "additionalProperties": _counts(
                                [state.value for state in DeliveryState], "deliveries of one channel"
                            ),
                        },
                        "total": {"type": "integer", "minimum": 0},
                        "unfinished": {"type": "integer", "minimum": 0},
                        "uncertain": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "sends that timed out: maybe delivered, never resent",
                        },
                        "rate_per_second": {"type": "number", "minimum": 0},
                        "eta_seconds": {"oneOf": [{"type": "number", "minimum": 0}, {"type": "null"}]},
                    },
                },
            ]
        },
        "BroadcastStats": {
            "type": "object",
            "description": (
                "What a broadcast came to (the same as `jianbao broadcast stats --json`): deliveries per "
                "channel by outcome, the clicks on its links, unsubscribes within 7 days of its start"
            ),
            "required": ["date", "channels", "links", "unsubscribes", "filtered_clicks"],
            "properties": {
                "date": {"type": "string", "format": "date"},
                "channels": {
                    "type": "object",
                    "propertyNames": _CHANNEL,
                    "additionalProperties": {
                        "type": "object",
                        "required": list(_CHANNEL_FIGURES),
                        "properties": {
                            name: {"type": "integer", "minimum": 0, "description": description}
                            for name, description in _CHANNEL_FIGURES.items()
                        },
                        "additionalProperties": False,
                    },
                },
                "links": {
                    "type": "array",
                    "description": "the tracked links on the broadcast's channels, most clicked first",
                    "items": {
                        "type": "object",
                        "required": ["url", "section", "title", "clicks", "unique_clicks"],
                        "properties": {
                            "url": {"type": "string"},
                            "section": {"type": "string", "description": "the item's section, or empty"},
                            "title": {"type": "string", "description": "the item's title, or empty"},
                            "clicks": {"type": "integer", "minimum": 0},
                            "unique_clicks": {"type": "integer", "minimum": 0},
                        },
                        "additionalProperties": False,
                    },
                },
                "unsubscribes": {
                    "type": "object",
                    "description": (
                        "per channel, subscribers who unsubscribed within 7 days of the broadcast's start "
                        "(attributed by time, not by link)"
                    ),
                    "additionalProperties": {"type": "integer", "minimum": 0},
                },
                "filtered_clicks": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "clicks not counted: previews, scanners, repeats",
                },
            },
            "additionalProperties": False,
        },
        "DryRun": {
            "type": "object",
            "required": ["dry_run", "date", "channels", "audience", "payloads"],
            "properties": {
                "dry_run": {"const": True},
                "date": {"type": "string", "format": "date"},
                "channels": {"type": "array", "items": _CHANNEL},
                "audience": {
                    "type": "object",
                    "description": "per channel, how many subscribers would get the issue and how many not",
                    "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
                },
                "payloads": {"type": "object", "description": "per channel, the size of what would be sent"},
            },
            "additionalProperties": False,
        },
    }


RESPONSES: dict[str, Any] = {
    "BadInput": _error("The request is malformed; the error names what is wrong."),
    "Unauthorized": _error("No admin token, or a wrong one (Authorization: Bearer <JIANBAO_ADMIN_TOKEN>)."),
    "NotFound": _error("No such issue or broadcast."),
    "Conflict": _error("The broadcast's state does not allow it (e.g. resuming a cancelled broadcast)."),
    "TooManyRequests": _error(
        "Too many wrong admin tokens from this address within a minute: wait, token unchecked.",
        headers={
            "Retry-After": {
                "description": "seconds to wait",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        },
    ),
    "Unavailable": _error("The database cannot be reached right now: try again."),
}


def _answers(*names: str) -> dict[str, Any]:
    status = {
        "BadInput": "400",
        "Unauthorized": "401",
        "NotFound": "404",
        "Conflict": "409",
        "TooManyRequests": "429",
        "Unavailable": "503",
    }
    return {status[name]: {"$ref": f"#/components/responses/{name}"} for name in names}


_ALWAYS = ("Unauthorized", "TooManyRequests", "Unavailable")
_BROADCAST_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "the broadcast's id (`jianbao broadcast status` shows it)",
    "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999},
}


def _steer(verb: str, what: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"{verb}Broadcast",
            "summary": what,
            "parameters": [_BROADCAST_ID],
            "responses": {"200": _json_body(_ref("BroadcastStatus"), "the broadcast after the change")}
            | _answers("NotFound", "Conflict", *_ALWAYS),
        }
    }


# An issue of the bundled demo content (content/demo/), so that the examples work on a fresh install.
CREATE_EXAMPLES = {
    "dry run": {"value": {"date": "2020-07-02", "channels": ["telegram", "email"], "dry_run": True}},
    "start now": {"value": {"date": "2020-07-02", "channels": ["telegram"]}},
    "start later": {"value": {"date": "2020-07-18", "at": "2030-01-06T08:00:00+08:00"}},
}
# What a client can do next with the broadcast it created (schemathesis follows these statefully).
_LINKS = {
    f"{operation}Broadcast": {
        "operationId": f"{operation}Broadcast",
        "parameters": {"id": "$response.body#/id"},
    }
    for operation in ("get", "pause", "resume", "cancel")
} | {"getBroadcastStats": {"operationId": "getBroadcastStats", "parameters": {"id": "$response.body#/id"}}}

PATHS: dict[str, Any] = {
    "/api/status": {
        "get": {
            "operationId": "getStatus",
            "summary": "Issues, search index size, subscribers per channel and status, channels on or off",
            "responses": {"200": _json_body(_ref("Status"), "the counts")} | _answers(*_ALWAYS),
        }
    },
    "/api/broadcasts": {
        "post": {
            "operationId": "createBroadcast",
            "summary": "Broadcast an issue: one delivery per subscriber and channel, in one transaction",
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("CreateBroadcast"), "examples": CREATE_EXAMPLES}},
            },
            "responses": {
                "201": _json_body(_ref("StartedBroadcast"), "the broadcast, created") | {"links": _LINKS},
                "200": _json_body(
                    {"oneOf": [_ref("StartedBroadcast"), _ref("DryRun")]},
                    "the broadcast, which existed already (only subscribers who joined since were added); "
                    "or, with dry_run, what it would do",
                ),
            }
            | _answers("BadInput", "NotFound", "Conflict", *_ALWAYS),
        }
    },
    "/api/broadcasts/{id}": {
        "get": {
            "operationId": "getBroadcast",
            "summary": "A broadcast with its delivery counts, rate and ETA",
            "parameters": [_BROADCAST_ID],
            "responses": {"200": _json_body(_ref("BroadcastStatus"), "the broadcast")}
            | _answers("NotFound", *_ALWAYS),
        }
    },
    "/api/broadcasts/{id}/stats": {
        "get": {
            "operationId": "getBroadcastStats",
            "summary": "What a broadcast came to per channel, its links' clicks, unsubscribes after it",
            "parameters": [_BROADCAST_ID],
            "responses": {"200": _json_body(_ref("BroadcastStats"), "the figures")}
            | _answers("NotFound", *_ALWAYS),
        }
    },
    "/api/broadcasts/{id}/pause": _steer("pause", "Pause: nothing new is sent; what is in flight finishes"),
    "/api/broadcasts/{id}/resume": _steer("resume", "Resume a paused broadcast"),
    "/api/broadcasts/{id}/cancel": _steer("cancel", "Cancel: pending deliveries become skipped"),
    OPENAPI_PATH: {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "responses": {"200": _json_body({"type": "object"}, "the OpenAPI document")}
            | _answers("Unauthorized", "TooManyRequests"),
        }
    },
}


def document(channels: Sequence[str]) -> dict[str, Any]:
    """The OpenAPI document for a service whose registry holds `channels`."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jianbao admin API",
            "version": "1",
            "description": (
                "The editors' API: counts and broadcasts. Every route needs "
                "`Authorization: Bearer <JIANBAO_ADMIN_TOKEN>`; without a configured token the API does not "
                'exist (404). Errors are JSON objects {"error": "..."}.'
            ),
        },
        "security": [{"adminToken": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "JIANBAO_ADMIN_TOKEN, at least 32 characters",
                }
            },
            "schemas": _schemas(channels),
            "responses": RESPONSES,
        },
    }


async def openapi_document(request: web.Request) -> web.StreamResponse:
    """The document; registered only behind the admin-token check (bot/admin.py)."""
    names = request.app[SERVICES].channels.names
    body = json.dumps(document(names), ensure_ascii=False).encode()
    return web.Response(body=body, content_type=JSON, charset="utf-8")
