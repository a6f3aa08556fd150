"""The codec endpoint the Temporal UI and `temporal` CLI call to show encrypted payloads in clear.

Temporal's remote-codec protocol: POST {endpoint}/decode (and /encode) with a JSON `Payloads`
message, answered in kind. Only staff who may read every incident (R-SECRECY's standing roles:
the office, the leading group, publicity, 镇党政办, the discipline and supervision contacts) may
use it, signed in by a browser session of this app (the UI's "include cross-origin credentials"
sends its cookie) or a personal token as `Authorization: Bearer …` (`temporal workflow show
--codec-auth`); anyone else signed in gets 403, as the API would refuse them most incidents.
Cross-origin calls are allowed from the Temporal UI's own origin only.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payloads

from runtime.codec import EncryptionCodec

from . import access
from .deps import caller, sees_every_incident
from .pages import pages
from .state import request_state

router = APIRouter()

MAX_BODY = 4 * 1024 * 1024
REFUSED = (
    "无权使用载荷加解密：仅限可查看全部事件的人员"
    "（领导小组及其办公室、宣传部门、镇党政办、执纪执法与监察执法联系人；R-SECRECY）"
)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _cors_headers(request: Request) -> dict[str, str]:
    """The CORS headers for the Temporal UI's own origin; none for any other."""
    k = pages(request)
    origin = request.headers.get("origin")
    if not (origin and origin == _origin(k.settings.temporal_ui_url)):
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Authorization, X-Namespace",
        "Vary": "Origin",
    }


def _cors(request: Request, response: Response) -> Response:
    response.headers.update(_cors_headers(request))
    return response


def _error(request: Request, status: int, message: str) -> Response:
    return _cors(request, JSONResponse({"detail": message}, status_code=status))


def _refused(request: Request, status: int, message: str) -> HTTPException:
    """`_error` as an exception, for a dependency (FastAPI answers it with the same body)."""
    return HTTPException(status, message, headers=_cors_headers(request))


def codec_in_use(request: Request, operation: str) -> EncryptionCodec:
    """The codec for a known operation; 404 for another operation, or when none is set up."""
    if operation not in ("encode", "decode"):
        raise _refused(request, 404, f"未知操作“{operation}”")
    codec_impl = request_state(request.app).codec
    if codec_impl is None:
        raise _refused(request, 404, "未启用载荷加密（YUQING_CODEC_KEYS）")
    return codec_impl


def codec_caller(request: Request) -> str:
    """The person calling, by session or bearer token (asks the store: a plain `def`, which
    FastAPI runs in its thread pool); 401 otherwise."""
    person = caller(request)
    if person is None:
        raise _refused(
            request, 401, "需要登录：请先登录本系统，或在 Authorization 头中提供 Bearer 令牌"
        )
    return person


EnabledCodec = Annotated[EncryptionCodec, Depends(codec_in_use)]
CodecCaller = Annotated[str, Depends(codec_caller)]


@router.options("/codec/{operation}")
async def codec_preflight(request: Request, operation: str) -> Response:
    return _cors(request, Response(status_code=204))


@router.post("/codec/{operation}")
async def codec(
    request: Request, operation: str, codec_impl: EnabledCodec, person: CodecCaller
) -> Response:
    if not sees_every_incident(pages(request).roster, person):
        access.record(request, person, operation, granted=False)
        return _error(request, 403, REFUSED)
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return _error(request, 413, "请求内容过大")
    try:
        payloads = json_format.Parse(raw or b"{}", Payloads())
    except (json_format.ParseError, DecodeError, UnicodeDecodeError) as exc:
        return _error(request, 400, f"请求内容不是有效的 Payloads JSON（{exc}）")
    try:
        if operation == "encode":
            out = await codec_impl.encode(list(payloads.payloads))
        else:
            out = await codec_impl.decode(list(payloads.payloads))
    except Exception as exc:  # an unknown key id, a payload that fails authentication
        return _error(request, 400, f"无法{'加密' if operation == 'encode' else '解密'}：{exc}")
    access.record(request, person, operation, resource=f"/codec/{operation}（{len(out)}个载荷）")
    body = json_format.MessageToJson(Payloads(payloads=out))
    return _cors(request, Response(body, media_type="application/json"))
