"""Attachments' files (issue 19): what a file is, by its content, and where it lies.

A file is accepted only if its content is one of plan/models.py `ATTACHMENT_TYPES`, whatever its
name or declared type: an image by its signature and Pillow's `verify()`, a PDF by its signature
and pypdf reading its pages, a Word document by python-docx opening it (its signature is any ZIP's).
Anything else: `Refused` (422, in Chinese).

Files lie in `settings.attachment_folder()` under their sha256 (`ab/ab12…`), written to a
temporary file in the same folder while they stream in (hashed and counted on the way: `TooLarge` past the cap) and
renamed into place, so a file is whole or absent. The same content is stored once. The uploader's
file name is display text only (`display_name`), never part of a path.

A file whose workflow update was then refused stays on disk with no row naming it: harmless (it is
served to nobody; the same content added again finds it there). A file deleted from disk is told
apart from a row that does not exist (store/attachments.py `path_of` answers None: the download
says it is lost).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from config.settings import Settings
from plan.models import ATTACHMENT_NAME_MAX, DOCX_TYPE
from store.attachments import file_path

CHUNK = 64 * 1024
PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff"
PDF = b"%PDF-"
ZIP = b"PK\x03\x04"
ACCEPTED = "只接受图片（PNG、JPEG、WebP）、PDF或DOCX文字文档"
# The public report form's evidence (issue 19, item 5): screenshots and PDFs, a few per report.
EVIDENCE_TYPES = ("image/png", "image/jpeg", "image/webp", "application/pdf")
EVIDENCE_MAX = 5
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


class Readable(Protocol):
    async def read(self, size: int = -1) -> bytes: ...


class Refused(Exception):
    """The content is not an accepted attachment (HTTP 422)."""


class TooLarge(Exception):
    """The file is over the cap (HTTP 413)."""

    def __init__(self, max_mb: int) -> None:
        super().__init__(f"附件过大（上限{max_mb}MB），请压缩后重试")
        self.max_mb = max_mb


@dataclass(frozen=True)
class Stored:
    sha256: str
    size: int
    media_type: str


def display_name(raw: str | None) -> str:
    """The uploader's file name as display text: its last path segment, without control or path
    characters, at most ATTACHMENT_NAME_MAX characters (the extension kept); never a path."""
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    name = re.sub(r"\.{2,}", ".", name)
    if len(name) > ATTACHMENT_NAME_MAX:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: ATTACHMENT_NAME_MAX - len(ext) - 1] + "." + ext
        else:
            name = name[:ATTACHMENT_NAME_MAX]
    return name or "附件"


async def receive(settings: Settings, upload: Readable) -> tuple[Path, str, int]:
    """Stream the upload into a temporary file in the attachments' folder, hashing and counting:
    (the temporary file, its sha256, its size). TooLarge past the cap (the temporary file gone)."""
    root = settings.attachment_folder()
    root.mkdir(parents=True, exist_ok=True)
    cap = settings.attachment_max_mb * 1024 * 1024
    digest = hashlib.sha256()
    size = 0
    fd, name = tempfile.mkstemp(dir=root, prefix=".incoming-")
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > cap:
                    raise TooLarge(settings.attachment_max_mb)
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, digest.hexdigest(), size


def media_type_of(path: Path) -> str:
    """What the file is, by its content: one of ATTACHMENT_TYPES' types, or Refused."""
    with path.open("rb") as f:
        head = f.read(16)
    if not head:
        raise Refused(f"附件是空文件；{ACCEPTED}")
    if head.startswith(PNG):
        return _image(path, "PNG", "image/png")
    if head.startswith(JPEG):
        return _image(path, "JPEG", "image/jpeg")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _image(path, "WEBP", "image/webp")
    if head.startswith(PDF):
        return _pdf(path)
    if head.startswith(ZIP):
        return _docx(path)
    raise Refused(f"附件类型不受支持：{ACCEPTED}")


def _image(path: Path, fmt: str, media_type: str) -> str:
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.format != fmt:
                raise Refused(f"附件不是有效的{fmt}图片")
            image.verify()
    except Refused:
        raise
    except Exception as exc:  # any decoder error: not a whole image
        raise Refused(f"附件不是有效的{fmt}图片（文件已损坏或不完整）") from exc
    return media_type


def _pdf(path: Path) -> str:
    from pypdf import PdfReader

    try:
        reader = PdfReader(path, strict=False)
        if len(reader.pages) < 1:
            raise ValueError("no pages")
    except Exception as exc:  # pypdf's errors, and anything a broken file makes it raise
        raise Refused("附件不是有效的PDF文档（文件已损坏或不完整）") from exc
    return "application/pdf"


# python-docx reads a package's parts into memory: a ZIP that unpacks to more than this (a "zip
# bomb" within the upload cap) is refused before it is opened.
UNPACKED_MAX = 256 * 1024 * 1024


def _docx(path: Path) -> str:
    import zipfile

    import docx

    try:
        with zipfile.ZipFile(path) as package:
            infos = package.infolist()
            names = {i.filename for i in infos}
            if sum(i.file_size for i in infos) > UNPACKED_MAX or len(infos) > 10_000:
                raise Refused("附件解压后过大，不能作为DOCX文字文档接受")
            if not {"[Content_Types].xml", "word/document.xml"} <= names:
                raise ValueError("not a Word package")
        docx.Document(str(path))
    except Refused:
        raise
    except Exception as exc:  # not a Word package (another ZIP), or a broken one
        raise Refused(f"附件是压缩文件而不是DOCX文字文档；{ACCEPTED}") from exc
    return DOCX_TYPE


def keep(settings: Settings, temp: Path, sha256: str) -> None:
    """Move a checked temporary file into place under its hash (atomic rename); when the same
    content is already there, drop the temporary file instead (deduplicated)."""
    target = file_path(settings.attachment_folder(), sha256)
    if target.is_file():
        temp.unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, target)


def check(temp: Path, allowed: Collection[str] | None = None, refusal: str = "") -> str:
    """The received file's type by its content; Refused (the temporary file gone) when it is no
    accepted attachment, or not one of `allowed` (then with `refusal` as the reason)."""
    try:
        media_type = media_type_of(temp)
        if allowed is not None and media_type not in allowed:
            raise Refused(refusal)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return media_type


def check_and_keep(
    settings: Settings,
    temp: Path,
    sha256: str,
    size: int,
    allowed: Collection[str] | None = None,
    refusal: str = "",
) -> Stored:
    """Check the received file by its content, then keep it; Refused leaves nothing behind."""
    media_type = check(temp, allowed, refusal)
    keep(settings, temp, sha256)
    return Stored(sha256, size, media_type)
