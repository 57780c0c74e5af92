"""Sagas that carry large documents, for the payload store tests.

Kept in a module of its own with few imports: the workflow sandbox re-imports it.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from sagaloom import Command, Saga, Step, StepContext, UndoContext, saga_workflow


class Document(BaseModel):
    """A document to file: ``body`` is as large as the test makes it."""

    doc_id: str
    body: str
    echo: bool = False
    """The archive replies with the whole body too (a large reply)."""


def _file(ctx: StepContext[Document]) -> dict[str, object]:
    return {"doc_id": ctx.input.doc_id, "body": ctx.input.body, "echo": ctx.input.echo}


def _ref(ctx: StepContext[Document] | UndoContext[Document]) -> dict[str, object]:
    return {"doc_id": ctx.input.doc_id}


DOCUMENTS = Saga(
    name="DocumentSaga",
    input=Document,
    key=lambda doc: doc.doc_id,
    steps=[
        Step(
            "file",
            Command("archive.file", body=_file),
            compensation=Command("archive.unfile", body=_ref),
            reply_timeout=timedelta(minutes=2),
        ),
        Step(
            "approve",
            Command("archive.approve", body=_ref),
            reply_timeout=timedelta(minutes=1),
        ),
    ],
)
"""File a document at the archive (over NATS), then have it approved (refused: unfiled)."""
DocumentSaga = saga_workflow(DOCUMENTS)
