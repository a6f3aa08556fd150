"""The payload converter: pydantic JSON, with the workflow's own inputs written without the fields
that hold their defaults (issue 21: the start input, each `record` write, each delivery, each
absences signal, about a third of an incident's payload bytes).

Which models are written compactly is said by the model (`COMPACT_PAYLOAD = True` on the class of
the value at the top of a payload). The models read back outside the worker stay whole: the view
a query returns, an update's `ActionDone`, the workflow's result, what `temporal workflow query`
or another program reads.

A compact payload reads back with each left-out field at its default, so **a default of a
compact model is part of the history's format**: changing one would change what saved histories
mean on replay. tests/test_payloads.py keeps every such default and fails when one changes; add
a new field instead.
"""

from __future__ import annotations

from typing import Any

import temporalio.api.common.v1
from pydantic_core import SchemaSerializer, core_schema
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

COMPACT_FLAG = "COMPACT_PAYLOAD"


def is_compact(value: object) -> bool:
    return bool(getattr(type(value), COMPACT_FLAG, False))


class CompactJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    """`json/plain` as pydantic writes it; a compact model's defaults left out."""

    def __init__(self) -> None:
        super().__init__()
        self._any = SchemaSerializer(core_schema.any_schema())

    def to_payload(self, value: Any) -> temporalio.api.common.v1.Payload | None:
        if not is_compact(value):
            return super().to_payload(value)
        return temporalio.api.common.v1.Payload(
            metadata={"encoding": self.encoding.encode()},
            data=self._any.to_json(value, exclude_defaults=True),
        )


class CompactPayloadConverter(CompositePayloadConverter):
    """The default converters with JSON replaced by ours (as temporalio.contrib.pydantic's
    PydanticPayloadConverter replaces it by pydantic's)."""

    def __init__(self) -> None:
        json_converter = CompactJSONPayloadConverter()
        super().__init__(
            *(
                json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


compact_data_converter = DataConverter(payload_converter_class=CompactPayloadConverter)
"""Every client and worker of ours (runtime/client.py), the replay gate and the tests."""
