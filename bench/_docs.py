"""The payload benchmark's saga: a document through three in-memory steps.

Sandbox-safe: the workflow sandbox re-imports this module.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel
from temporalio import activity

from sagaloom import Activity, Saga, Step, StepContext, saga_workflow

__all__ = ["DOC", "DocBenchSaga", "digest", "file", "stamp"]


class DocInput(BaseModel):
    id: str
    body: str


@activity.defn(name="bench.doc.digest")
async def digest(body: str) -> dict[str, str]:
    """Read the document (its digest: the step's output is small)."""
    return {"sha256": hashlib.sha256(body.encode()).hexdigest()}


@activity.defn(name="bench.doc.file")
async def file(body: str) -> dict[str, int]:
    """File the document (in memory: the benchmark measures the engine)."""
    return {"bytes": len(body)}


@activity.defn(name="bench.doc.stamp")
async def stamp(body: str) -> dict[str, str]:
    """Return the document stamped: an output as large as the input."""
    return {"stamped": body}


def _body(ctx: StepContext[DocInput]) -> str:
    return ctx.input.body


DOC: Saga[DocInput] = Saga(
    name="DocBenchSaga",
    input=DocInput,
    key=lambda i: i.id,
    steps=[
        Step("digest", Activity(digest, arg=_body)),
        Step("file", Activity(file, arg=_body)),
        Step("stamp", Activity(stamp, arg=_body)),
    ],
)
DocBenchSaga = saga_workflow(DOC)
