"""The codec endpoint of the Temporal Web UI ("codec server"): the payloads kept out of history
(``store/payloads.py``) resolved, so model inputs and outputs read in the UI as they were.

The UI calls ``<endpoint>/decode`` from the operator's browser without our bearer token, so the
endpoint's path carries a key derived from the token instead (:func:`codec_endpoint`, which
``codexflow up`` and the deploy files give the UI): without the key, 404.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from fastapi import APIRouter, HTTPException, status
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from api.deps import StateDep
from config import Settings
from store.payloads import PayloadMissing, resolve

__all__ = ["codec_endpoint", "codec_key", "router"]

router = APIRouter(tags=["Temporal UI"], include_in_schema=False)

_MAX_PAYLOADS = 1000


def codec_key(settings: Settings) -> str:
    """The key in the codec endpoint's path: ``CODEXFLOW_CODEC_KEY``, or the API token's HMAC
    (without a token, when the API answers on loopback only, a fixed one)."""
    if settings.codec_key is not None:
        return settings.codec_key.get_secret_value()
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    return hmac.new(token.encode(), b"codexflow temporal-ui codec", hashlib.sha256).hexdigest()[:32]


def codec_endpoint(settings: Settings, api_url: str) -> str:
    """What the Temporal UI's codec endpoint setting is, for the API at ``api_url``."""
    return f"{api_url.rstrip('/')}/api/codec/{codec_key(settings)}"


def _payloads(body: dict[str, Any]) -> Payloads:
    try:
        payloads = json_format.ParseDict(body, Payloads(), ignore_unknown_fields=True)
    except json_format.ParseError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"not payloads: {err}") from None
    if len(payloads.payloads) > _MAX_PAYLOADS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"at most {_MAX_PAYLOADS} payloads a request"
        )
    return payloads


def _check(state: StateDep, key: str) -> None:
    if not hmac.compare_digest(key.encode(), codec_key(state.settings).encode()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")


@router.post("/api/codec/{key}/decode")
async def decode(state: StateDep, key: str, body: dict[str, Any]) -> dict[str, Any]:
    """The payloads with every stored one in place of its reference."""
    _check(state, key)
    payloads = _payloads(body)
    try:
        resolved = await resolve(state.payloads, list(payloads.payloads))
    except PayloadMissing as err:
        raise HTTPException(status.HTTP_410_GONE, str(err)) from None
    return json_format.MessageToDict(Payloads(payloads=resolved))


@router.post("/api/codec/{key}/encode")
async def encode(state: StateDep, key: str, body: dict[str, Any]) -> dict[str, Any]:
    """As they are: what the UI sends (a signal's input) is small, and workers store what isn't."""
    _check(state, key)
    return json_format.MessageToDict(_payloads(body))
