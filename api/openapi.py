"""The OpenAPI document as client generators read it: uploads typed as binary (FastAPI writes
OpenAPI 3.1's ``contentMediaType``, which generated clients send as text, and the API answers
422), the project body's schema present, and error answers typed (``{"detail": ...}``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from api.schemas import ProjectCreate

__all__ = ["ErrorResponse", "openapi_for"]


class ErrorResponse(BaseModel):
    """Every error answer: what went wrong, for a person to read (422s: FastAPI's list)."""

    detail: str


def openapi_for(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for model in (ProjectCreate, ErrorResponse):  # ProjectCreate: read by hand (multipart too)
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        _binary_uploads(spec)
        _typed_errors(spec)
        app.openapi_schema = spec
    return app.openapi_schema


def _binary_uploads(node: Any) -> None:
    if isinstance(node, dict):
        if (
            node.get("type") == "string"
            and node.get("contentMediaType") == "application/octet-stream"
        ):
            del node["contentMediaType"]
            node["format"] = "binary"
        for value in node.values():
            _binary_uploads(value)
    elif isinstance(node, list):
        for value in node:
            _binary_uploads(value)


def _typed_errors(spec: dict[str, Any]) -> None:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for code, response in operation.get("responses", {}).items():
                if code.startswith(("4", "5")) and code != "422" and "content" not in response:
                    response["content"] = error
