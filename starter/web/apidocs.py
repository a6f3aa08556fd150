"""/api/docs: Swagger UI for the JSON API, served by this app from the files of the
fastapi-offline package (pinned in pyproject.toml: 1.7.7 ships Swagger UI 5.32.6, Apache-2.0;
the package itself is MIT). Swagger UI 4 (swagger-ui-bundle on PyPI) cannot read FastAPI's
OpenAPI 3.1. Nothing is fetched from a CDN, at run time or ever, and the page has no inline script:
its start-up is static/api-docs.js, so the site's Content-Security-Policy (starter/web/headers.py)
holds here too (issue 15, finding 10). Only the two files the page loads are served from the
package; its own page builder (which writes an inline script) is not used.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from markupsafe import escape

from starter.incidents import ServiceError

ASSETS = Path(str(files("fastapi_offline") / "static"))
# Only what the page loads.
SERVED = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}

PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} · 接口文档</title>
  <link rel="stylesheet" href="/api/docs/assets/swagger-ui.css">
  <link rel="icon" href="data:,">
  <script src="/api/docs/assets/swagger-ui-bundle.js" defer></script>
  <script src="/static/api-docs.js" defer></script>
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi_url}"><noscript>接口文档需要启用 JavaScript；
  接口说明的 JSON 文件见 <a href="{openapi_url}">{openapi_url}</a>。</noscript></div>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


@router.get("/api/docs", response_class=HTMLResponse)
async def api_docs(request: Request) -> HTMLResponse:
    app = request.app
    html = PAGE.format(title=escape(app.title), openapi_url=escape(app.openapi_url or ""))
    return HTMLResponse(html)


@router.get("/api/docs/assets/{name}")
async def api_docs_asset(name: str) -> FileResponse:
    media_type = SERVED.get(name)
    if media_type is None:
        raise ServiceError(404, "文件不存在")
    return FileResponse(ASSETS / name, media_type=media_type)
