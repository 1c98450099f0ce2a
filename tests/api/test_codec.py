"""The Temporal Web UI's codec endpoint: stored payloads resolved for the operator's browser, only
with the key derived from the API token, from the UI's origin."""

from __future__ import annotations

import base64
import json

import httpx
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payloads

from api.routes.codec import codec_endpoint, codec_key
from config import Settings
from store.temporal import client_converter

UI = "http://localhost:8233"


async def _stored(settings: Settings, value: object) -> dict:
    """``value`` as history holds it: a reference to the stored payload, as the UI sends it."""
    converter = client_converter(settings)
    (reference,) = await converter.encode([value])
    await converter.external_storage.drivers[0].close()  # type: ignore[union-attr, attr-defined]
    return json_format.MessageToDict(Payloads(payloads=[reference]))


async def test_the_ui_reads_stored_payloads_through_the_codec(
    api: httpx.AsyncClient, api_settings: Settings
) -> None:
    conversation = {"input": [{"role": "user", "content": "Build it. " * 2000}]}
    body = await _stored(api_settings, conversation)
    small = json_format.MessageToDict(
        Payloads(payloads=await client_converter(api_settings).encode(["hi"]))
    )
    body["payloads"].append(small["payloads"][0])
    path = codec_endpoint(api_settings, "http://api").removeprefix("http://api")

    # The browser sends no bearer token: the key in the path is what lets it in.
    answer = await api.post(
        f"{path}/decode",
        json=body,
        headers={"Authorization": "", "Origin": UI, "X-Namespace": "default"},
    )
    assert answer.status_code == 200, answer.text
    decoded, untouched = answer.json()["payloads"]
    assert json.loads(base64.b64decode(decoded["data"])) == conversation
    assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"
    assert untouched == small["payloads"][0]
    assert answer.headers["access-control-allow-origin"] == UI

    # The preflight the UI's browser makes first.
    preflight = await api.options(
        f"{path}/decode",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == UI

    encoded = await api.post(f"{path}/encode", json=small, headers={"Authorization": ""})
    assert encoded.json() == small


async def test_the_codec_wants_its_key(api: httpx.AsyncClient, api_settings: Settings) -> None:
    body = await _stored(api_settings, {"secret": "s" * 10_000})
    for key in ("0" * 32, codec_key(api_settings)[:-1] + "x", ""):
        answer = await api.post(
            f"/api/codec/{key}/decode", json=body, headers={"Authorization": ""}
        )
        assert answer.status_code == 404, (key, answer.text)
        assert "s" * 100 not in answer.text
    # Another token, another key: a key is no use once the token is changed.
    other = api_settings.model_copy(update={"api_token": SecretStr("another-token-" + "7" * 30)})
    assert codec_key(other) != codec_key(api_settings)


async def test_bad_codec_input_is_a_clear_error(
    api: httpx.AsyncClient, api_settings: Settings
) -> None:
    path = f"/api/codec/{codec_key(api_settings)}/decode"
    answer = await api.post(path, json={"payloads": [{"data": "not base64!"}]})
    assert answer.status_code == 422 and "not payloads" in answer.text
    answer = await api.post(path, json={"payloads": "three"})
    assert answer.status_code == 422
    missing = await _stored(api_settings, {"x": "y" * 10_000})
    data = json.loads(base64.b64decode(missing["payloads"][0]["data"]))
    data["claimData"]["digest"] = "0" * 64
    missing["payloads"][0]["data"] = base64.b64encode(json.dumps(data).encode()).decode()
    answer = await api.post(path, json=missing)
    assert answer.status_code == 410 and "is gone" in answer.text
