"""A workflow for tests/test_sandbox.py that reports whether it runs on the module object the
worker imported (a passed-through module) or on a fresh import."""

from __future__ import annotations

import sys

from temporalio import workflow


@workflow.defn
class WhichModule:
    @workflow.run
    async def run(self) -> bool:
        return sys.modules[__name__].__dict__.get("MARK") == "set by the test"
