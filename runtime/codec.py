"""Payload encryption: an AES-256-GCM codec that keeps incident content out of Temporal's history.

Every payload (workflow input, activity arguments and results, update bodies, summaries of timers
and activities, failure messages) is encrypted on the client and the worker before it leaves the
process; the server and anyone reading its database see only the key id. Keys rotate by putting a
new key first: the first key encrypts, every listed key still decrypts what was written with it.
Search attributes and workflow ids are not payloads; they carry no personal data by design.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class CodecKeyError(ValueError):
    """The codec's keys are missing or malformed (a setting), or a payload's key is unknown."""


class PlainPayloadRefused(ValueError):
    """A payload that is not encrypted reached a codec that refuses them: with keys set, whatever
    the worker acts on was sent by the app, the API or the CLI, which always encrypt; a plain one
    was put into Temporal some other way (a start, signal or update forged through the server)."""


def parse_keys(text: str) -> list[tuple[str, bytes]]:
    """`id:base64key` entries separated by commas or new lines, the encrypting key first.
    Each key is 32 bytes (AES-256), as `yuqing codec-key` prints."""
    keys: list[tuple[str, bytes]] = []
    for raw in text.replace(",", "\n").splitlines():
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        key_id, sep, encoded = entry.partition(":")
        if not sep or not key_id.strip():
            raise CodecKeyError(f"codec key entry {entry[:12]!r}…: expected KEY_ID:BASE64_KEY")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error as exc:
            raise CodecKeyError(f"codec key {key_id.strip()!r}: not base64") from exc
        if len(key) != 32:
            raise CodecKeyError(f"codec key {key_id.strip()!r}: {len(key)} bytes, expected 32")
        if any(k == key_id.strip() for k, _ in keys):
            raise CodecKeyError(f"codec key {key_id.strip()!r} is listed twice")
        keys.append((key_id.strip(), key))
    if not keys:
        raise CodecKeyError("no codec key given")
    return keys


def new_key_entry(key_id: str) -> str:
    """A fresh `id:base64key` entry for the settings."""
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


class EncryptionCodec(PayloadCodec):
    """`refuse_plain`: decoding a payload that is not encrypted raises PlainPayloadRefused (the
    data converter of the worker and clients, YUQING_CODEC_REFUSE_PLAIN); otherwise it is passed
    through as written before the codec was turned on (the codec endpoint, history exports)."""

    def __init__(self, keys: Sequence[tuple[str, bytes]], *, refuse_plain: bool = False) -> None:
        if not keys:
            raise CodecKeyError("no codec key given")
        self.refuse_plain = refuse_plain
        self.active_id, active = keys[0]
        self._active = AESGCM(active)
        self._by_id = {key_id: AESGCM(key) for key_id, key in keys}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            nonce = os.urandom(NONCE_BYTES)
            # The key id is bound to the ciphertext as associated data: swapping it fails.
            sealed = self._active.encrypt(nonce, p.SerializeToString(), self.active_id.encode())
            out.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: self.active_id.encode()},
                    data=nonce + sealed,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(p) for p in payloads]

    def _decode_one(self, p: Payload) -> Payload:
        if p.metadata.get("encoding") != ENCODING:
            if self.refuse_plain:
                encoding = p.metadata.get("encoding", b"").decode(errors="replace")[:40]
                raise PlainPayloadRefused(
                    f"payload not encrypted (encoding {encoding!r}) refused: with codec keys set "
                    "only encrypted payloads are accepted (YUQING_CODEC_REFUSE_PLAIN)"
                )
            return p  # written before the codec was turned on
        key_id = p.metadata.get(KEY_ID, b"").decode()
        aes = self._by_id.get(key_id)
        if aes is None:
            raise CodecKeyError(f"payload encrypted with unknown key id {key_id!r}")
        plain = aes.decrypt(p.data[:NONCE_BYTES], p.data[NONCE_BYTES:], key_id.encode())
        return Payload.FromString(plain)


def load_keys(inline: str | None, file: Path | None) -> list[tuple[str, bytes]] | None:
    """The keys from the settings (inline, or a file only the service can read), or None."""
    parts: Iterable[str] = [t for t in (inline, file.read_text() if file else None) if t]
    text = "\n".join(parts)
    return parse_keys(text) if text.strip() else None


def with_codec(converter: DataConverter, codec: PayloadCodec | None) -> DataConverter:
    """The converter with the codec, and failure messages and stack traces encoded too."""
    if codec is None:
        return converter
    return dataclasses.replace(
        converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def decode_message(message: Message, codec: PayloadCodec) -> None:
    """Decode, in place, every payload anywhere inside a proto message (a whole history, say):
    for exporting a history of an encrypted namespace in clear (`yuqing export-history --decode`)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.full_name == Payload.DESCRIPTOR.full_name:
            if field.is_repeated:
                decoded = await codec.decode(list(value))
                del value[:]
                value.extend(decoded)
            else:
                value.CopyFrom((await codec.decode([value]))[0])
        elif field.message_type.GetOptions().map_entry:
            entry_value = field.message_type.fields_by_name["value"]
            if entry_value.message_type is None:
                continue
            for key in list(value):
                if entry_value.message_type.full_name == Payload.DESCRIPTOR.full_name:
                    value[key].CopyFrom((await codec.decode([value[key]]))[0])
                else:
                    await decode_message(value[key], codec)
        elif field.is_repeated:
            for item in value:
                await decode_message(item, codec)
        else:
            await decode_message(value, codec)
