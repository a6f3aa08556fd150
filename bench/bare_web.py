"""The bare submission baseline's web app (`uvicorn --factory bench.bare_web:create_app`): a minimal
ASGI app that does per request what `POST /api/incidents` does with Temporal, and nothing else.

`POST /submit` (any JSON body; a header check only: `Authorization: Bearer …`) starts a
`BareLifecycleWorkflow` on the bare worker's task queue and queries it once, as starter/incidents.py
`submit` starts the incident and queries its view: the same two round trips to the Temporal server.
The workflow follows the plan set by `PUT /plan` (the bench sets it from the history of one of our
submitted incidents: what ours does on its own until someone acts) and then waits for an update
that never comes, as ours waits for triage. `GET /healthz` answers once the app is up.

Read from the environment: BENCH_BARE_TEMPORAL_ADDRESS and BENCH_BARE_TASK_QUEUE.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.bare import BareLifecycleWorkflow, LifecyclePlan

PLAN = TypeAdapter(LifecyclePlan)


def create_app() -> Starlette:
    address = os.environ["BENCH_BARE_TEMPORAL_ADDRESS"]
    task_queue = os.environ["BENCH_BARE_TASK_QUEUE"]
    state: dict[str, Any] = {"client": None, "plan": LifecyclePlan(updates=1, segments=[])}

    async def client() -> Client:
        # As ours: connected on the first request that needs it.
        if state["client"] is None:
            state["client"] = await Client.connect(address, data_converter=pydantic_data_converter)
        return state["client"]  # type: ignore[no-any-return]

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def put_plan(request: Request) -> Response:
        state["plan"] = PLAN.validate_python(await request.json())
        return JSONResponse(PLAN.dump_python(state["plan"], mode="json"))

    async def submit(request: Request) -> Response:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return JSONResponse({"detail": "not signed in"}, status_code=401)
        await request.json()
        c = await client()
        handle = await c.start_workflow(
            BareLifecycleWorkflow.run,
            state["plan"],
            id=f"bare-submit-{uuid.uuid4().hex}",
            task_queue=task_queue,
        )
        count = await handle.query(BareLifecycleWorkflow.count)
        return JSONResponse({"id": handle.id, "count": count}, status_code=201)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/plan", put_plan, methods=["PUT"]),
            Route("/submit", submit, methods=["POST"]),
        ]
    )
