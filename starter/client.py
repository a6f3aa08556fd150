"""The one place that builds a Temporal client from settings: dev server, cluster (mTLS) or Cloud
(API key). Payloads are pydantic-aware."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter

from config.settings import Settings


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


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=tls_config(settings),
        api_key=settings.temporal_api_key,
        data_converter=pydantic_data_converter,
    )
