"""Workflow variants for testing the replay gate (tests/test_replay.py). Their own module, without
file access at import, because the workflow sandbox re-imports the module a workflow lives in."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from plan.models import IncidentInput, IncidentView
    from workflows.incident import IncidentWorkflow


@workflow.defn(name="IncidentWorkflow")
class WithoutRecord(IncidentWorkflow):
    """Today's workflow minus the read-model activity, as a careless change would make it."""

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentView:
        return await super().run(inp)

    async def _flush(self) -> None:
        self.core.dirty = False
        await super()._flush()


@workflow.defn(name="IncidentWorkflow")
class WithoutRecordPatched(IncidentWorkflow):
    """The same change behind workflow.patched: old histories keep the old behaviour."""

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentView:
        return await super().run(inp)

    async def _flush(self) -> None:
        if workflow.patched("drop-record-activity"):
            self.core.dirty = False
        await super()._flush()
