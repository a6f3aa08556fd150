"""Posted forms: read once, their size and parse errors said in Chinese."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from starter.incidents import ServiceError

from .limits import BodyTooLarge


async def read_form(request: Request) -> FormData:
    """A posted form. Starlette refuses a field over 1 MB or over 1,000 fields, and a broken
    multipart body, with a bare 400 in English: here a 413 or a 400 with the page in Chinese.
    (The body as a whole is capped while it streams in: limits.BodyLimit.)"""
    try:
        return await request.form()
    except BodyTooLarge:
        raise
    except HTTPException as exc:
        detail = str(exc.detail)
        if "maximum size" in detail or "Too many" in detail:
            raise ServiceError(413, "提交内容过大，请精简后重试") from exc
        raise ServiceError(400, "表单内容无法解析，请刷新页面后重新提交") from exc
