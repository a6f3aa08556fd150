"""The payload converter: pydantic JSON, with the workflow's own inputs written without the fields
that hold their defaults (issue 21: the start input, each `record` write, each delivery, each
absences signal, about a third of an incident's payload bytes).

Which models are written compactly is said by the model (`COMPACT_PAYLOAD = True` on the class of
the value at the top of a payload). The models read back outside the worker stay whole: the view
a query returns, an update's `ActionDone`, the workflow's result, what `temporal workflow query`
or another program reads.

Equal frozen parts many payloads carry are read back as one object (`SHARED_FIELDS` on the
model): every incident's input holds the roster snapshot and the plan it started with, most of the
26 KiB its input took in each cached workflow, and nearly all of a town's incidents hold the same
ones. The SDK keeps each workflow's input for the life of the run, so this is where it is done.

A compact payload reads back with each left-out field at its default, so **a default of a
compact model is part of the history's format**: changing one would change what saved histories
mean on replay. tests/test_payloads.py keeps every such default and fails when one changes; add
a new field instead.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

import temporalio.api.common.v1
from pydantic import BaseModel
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

COMPACT_FLAG = "COMPACT_PAYLOAD"
SHARED_FLAG = "SHARED_FIELDS"

M = TypeVar("M", bound=BaseModel)

# A town has one roster and one plan at a time, and a few earlier ones while old incidents run.
KEPT = 8
_lock = threading.Lock()
_kept: dict[type, list[BaseModel]] = {}


def one_copy(value: M) -> M:
    """The kept value equal to `value`, else `value` (kept from now on, the oldest let go). Only
    frozen models: what one workflow holds, another cannot change."""
    if not value.model_config.get("frozen"):
        raise TypeError(f"{type(value).__name__} is not frozen: a shared copy could be changed")
    with _lock:
        kept = _kept.setdefault(type(value), [])
        for i, known in enumerate(kept):
            if known == value:
                if i:
                    kept.insert(0, kept.pop(i))
                return known  # type: ignore[return-value]
        kept.insert(0, value)
        del kept[KEPT:]
        return value


def shared(value: Any) -> Any:
    """`value` with its model's `SHARED_FIELDS` replaced by the kept equal objects."""
    names = getattr(type(value), SHARED_FLAG, ())
    if not names:
        return value
    return value.model_copy(update={n: one_copy(getattr(value, n)) for n in names})


def is_compact(value: object) -> bool:
    return bool(getattr(type(value), COMPACT_FLAG, False))


class CompactJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    """`json/plain` as pydantic writes it; a compact model's defaults left out."""

    def to_payload(self, value: Any) -> temporalio.api.common.v1.Payload | None:
        if not is_compact(value):
            return super().to_payload(value)
        return temporalio.api.common.v1.Payload(
            metadata={"encoding": self.encoding.encode()},
            data=self._schema_serializer.to_json(value, exclude_defaults=True),
        )

    def from_payload(
        self, payload: temporalio.api.common.v1.Payload, type_hint: type | None = None
    ) -> Any:
        return shared(super().from_payload(payload, type_hint))


# One for the process: it holds nothing but its caches (pydantic's type adapters), and the SDK
# makes a payload converter for every workflow it starts or replays; each used to build its
# own adapters again (issue 21: the worker's CPU).
_JSON = CompactJSONPayloadConverter()


class CompactPayloadConverter(CompositePayloadConverter):
    """The default converters with JSON replaced by ours (as temporalio.contrib.pydantic's
    PydanticPayloadConverter replaces it by pydantic's)."""

    def __init__(self) -> None:
        super().__init__(
            *(
                _JSON if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


compact_data_converter = DataConverter(payload_converter_class=CompactPayloadConverter)
"""Every client and worker of ours (runtime/client.py), the replay gate and the tests."""
