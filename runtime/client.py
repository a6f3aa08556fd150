"""The one place that builds a Temporal client from settings: dev server, cluster (mTLS) or Cloud
(API key). Payloads are pydantic-aware, and encrypted when codec keys are set (runtime/codec.py)."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from config.settings import Settings
from runtime import core_exit
from runtime.codec import EncryptionCodec, load_keys, with_codec
from runtime.payloads import compact_data_converter


def tls_config(settings: Settings) -> TLSConfig | bool:
    files = (settings.temporal_tls_ca, settings.temporal_tls_cert, settings.temporal_tls_key)
    if not any(files) and not settings.temporal_tls:
        # An API key implies TLS (Temporal Cloud); otherwise plain gRPC to a local server.
        return bool(settings.temporal_api_key)
    ca, cert, key = (p.read_bytes() if p else None for p in files)
    return TLSConfig(
        server_root_ca_cert=ca,
        client_cert=cert,
        client_private_key=key,
        domain=settings.temporal_tls_server_name,
    )


def codec_for(settings: Settings, *, refuse_plain: bool = False) -> EncryptionCodec | None:
    """The codec from the settings' keys, or None. `refuse_plain` for what acts on payloads (the
    data converter); the codec endpoint and history exports show plain payloads as they are."""
    keys = load_keys(settings.codec_keys, settings.codec_keys_file)
    return EncryptionCodec(keys, refuse_plain=refuse_plain) if keys else None


def data_converter(settings: Settings) -> DataConverter:
    """With keys set, the worker (and every client) refuses a payload that is not encrypted,
    unless YUQING_CODEC_REFUSE_PLAIN=false (while workflows started before the codec still run)."""
    return with_codec(
        compact_data_converter, codec_for(settings, refuse_plain=settings.codec_refuse_plain)
    )


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    core_exit.guard()  # the process will not finalise while the SDK core's threads are in Python
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=tls_config(settings),
        api_key=settings.temporal_api_key,
        data_converter=data_converter(settings),
        runtime=runtime,
    )
