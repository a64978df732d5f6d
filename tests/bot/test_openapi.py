"""GET /api/openapi.json: the admin API's OpenAPI document, behind the admin token, valid, and in step
with the routes the app really registers under /api/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import hdrs
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from bot.app import create_app
from bot.openapi import document
from bot.settings import Settings
from channels.registry import channel_registry

DOCUMENT = document(channel_registry().names)

TOKEN = "an-admin-token-for-the-openapi-tests-0123456789"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'openapi.db'}", admin_token=TOKEN)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[object, object]]:
    async with TestClient(TestServer(create_app(_settings(tmp_path)))) as client:
        yield client


async def test_the_document_is_served_with_the_token_and_is_valid_openapi(
    client: TestClient[object, object],
) -> None:
    response = await client.get("/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200
    assert response.content_type == "application/json"
    served = await response.json()
    assert served == DOCUMENT
    validate(served)  # raises OpenAPIValidationError, naming the fault, on an invalid document


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}"])
async def test_the_document_needs_the_admin_token(
    client: TestClient[object, object], header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await client.get("/api/openapi.json", headers=headers)
    assert response.status == 401
    assert set(await response.json()) == {"error"}


def test_the_document_describes_exactly_the_api_routes_the_app_registers(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))
    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method != hdrs.METH_HEAD  # aiohttp adds HEAD to every GET route by itself
    }
    described = {
        (method, path)
        for path, operations in DOCUMENT["paths"].items()
        for method in operations
        if method in HTTP_METHODS
    }
    assert registered == described
    assert ("post", "/api/broadcasts/{id}/cancel") in described  # the set comparison saw the real routes
