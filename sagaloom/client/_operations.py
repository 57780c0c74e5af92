"""An operator's actions on held sagas: redrive, compensate, mark done — one saga or many.

A saga whose ``on_failure`` policy holds waits at its failed step (``SagaStatus=HELD``). Each
action here is the saga's ``resolve`` update: its validator refuses one that does not fit (the
saga is not held, the step is not the held one, the input or output is invalid), so nothing
changes on a refusal; every action carries who took it, why, and an id, so the same action sent
twice is applied once.

For an incident — a participant answered 500 for an hour and a thousand sagas hold at its step —
:func:`act_on_held` acts on every saga a visibility query finds: it counts first (a dry run
stops there), goes at a set rate so the participant that just recovered is not stampeded, keeps
a checkpoint file so a run that died is resumed without acting on a saga twice, and sums up.
(Temporal's batch operations can signal, cancel, reset or terminate by query, but not send an
Update, whose validator is what makes an action safe; so the loop runs here.)
"""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.deployment.v1 import WorkerDeploymentVersion
from temporalio.api.workflow.v1 import VersioningOverride, WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import UpdateWorkflowExecutionOptionsRequest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from sagaloom._saga._model import Resolution, ResolveAction, SagaState, SagaStatus
from sagaloom._wire._names import RESOLVE_UPDATE

__all__ = [
    "BulkSummary",
    "HeldAction",
    "act_on_held",
    "compensate_held",
    "held_query",
    "mark_done",
    "move_to_build",
    "operator",
    "redrive",
]

HeldAction = Literal["redrive", "compensate"]
"""What a bulk run does to each held saga."""

_UPDATE: dict[str, ResolveAction] = {
    "redrive": "retry",
    "compensate": "compensate",
    "mark_done": "mark_done",
}


def operator() -> str:
    """Who acts, for the audit trail: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def _resolve(client: Client, workflow_id: str, resolution: Resolution) -> SagaState:
    handle = client.get_workflow_handle(workflow_id)
    state: SagaState = await handle.execute_update(
        RESOLVE_UPDATE, resolution, result_type=SagaState
    )
    return state


async def redrive(
    client: Client,
    workflow_id: str,
    *,
    input: dict[str, Any] | None = None,
    request_patch: dict[str, Any] | None = None,
    step: str | None = None,
    note: str = "",
    by: str | None = None,
    id: str | None = None,
) -> SagaState:
    """Run a held saga's failed step again, with fresh attempts, then go on.

    Args:
        client: A client of the saga's namespace.
        workflow_id: The held saga.
        input: A corrected saga input (validated; its business key cannot change); the step
            and the steps after it see it, and the decision records it.
        request_patch: A JSON merge patch of the step's request (body or argument), for this
            run of it only; recorded.
        step: The held step, to be sure (refused if another one is held).
        note: Why, for the audit trail.
        by: Who (default: ``user@host``).
        id: The action's id (default: a new one); the same id again changes nothing.

    Returns:
        The saga's state once the decision is taken (the step runs after).

    Raises:
        WorkflowUpdateFailedError: the saga is not held, or the input is invalid (the cause
            says why); nothing changed.
    """
    return await _resolve(client, workflow_id, Resolution(
        action="retry", step=step, input=input, request_patch=request_patch, note=note,
        by=by or operator(), id=id or uuid.uuid4().hex,
    ))  # fmt: skip


async def compensate_held(
    client: Client,
    workflow_id: str,
    *,
    step: str | None = None,
    note: str = "",
    by: str | None = None,
    id: str | None = None,
) -> SagaState:
    """Give up on a held saga: it undoes its started steps, as without a hold.

    Raises:
        WorkflowUpdateFailedError: the saga is not held (the cause says why).
    """
    return await _resolve(client, workflow_id, Resolution(
        action="compensate", step=step, note=note, by=by or operator(),
        id=id or uuid.uuid4().hex,
    ))  # fmt: skip


async def mark_done(
    client: Client,
    workflow_id: str,
    step: str,
    output: Any,
    *,
    note: str = "",
    by: str | None = None,
    id: str | None = None,
) -> SagaState:
    """Record a held step as done by hand (fixed outside the system), with its output.

    The saga goes on from the next step; the step stays registered for compensation, so should
    a later step fail, its compensation runs with ``output`` as the step's output.

    Raises:
        WorkflowUpdateFailedError: the saga is not held at ``step``, or ``output`` does not fit
            the step's ``output=`` model (the field is named).
    """
    return await _resolve(client, workflow_id, Resolution(
        action="mark_done", step=step, output=output, note=note, by=by or operator(),
        id=id or uuid.uuid4().hex,
    ))  # fmt: skip


async def move_to_build(client: Client, workflow_id: str, deployment: str, build_id: str) -> None:
    """Pin a saga to another build of its worker deployment (Temporal's versioning override).

    With pinned Worker Versioning a saga stays on the build it started on; a saga held because
    of a bug fixed in a newer build is moved to that build before its redrive, so the redrive
    runs the fixed code. The build must be compatible with the saga's history so far (a fix
    that changes no step already run, or one guarded with ``patch=``): its replay is checked
    by the new build's worker at the next workflow task.

    Raises:
        RPCError: the server refused (an unknown deployment or build, versioning disabled).
    """
    await client.workflow_service.update_workflow_execution_options(
        UpdateWorkflowExecutionOptionsRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            workflow_execution_options=WorkflowExecutionOptions(
                versioning_override=VersioningOverride(
                    pinned=VersioningOverride.PinnedOverride(
                        behavior=VersioningOverride.PINNED_OVERRIDE_BEHAVIOR_PINNED,
                        version=WorkerDeploymentVersion(
                            deployment_name=deployment, build_id=build_id
                        ),
                    )
                )
            ),
            update_mask=FieldMask(paths=["versioning_override"]),
            identity=client.identity,
        )
    )


def held_query(query: str | None = None) -> str:
    """The visibility query of the held sagas ``query`` narrows (a saga, a step, a key...)."""
    held = f'ExecutionStatus = "Running" AND SagaStatus = "{SagaStatus.HELD.value}"'
    return f"{held} AND ({query})" if query else held


@dataclass
class BulkSummary:
    """What a bulk run did."""

    query: str
    matched: int = 0
    """Held sagas the query found (at the count; more may have been held since)."""
    acted: int = 0
    """Sagas acted on by this run."""
    already: int = 0
    """Sagas acted on before, by an earlier run of the same checkpoint."""
    refused: dict[str, str] = field(default_factory=dict)
    """Sagas whose update was refused (no longer held, say), with why."""
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "query": self.query,
            "matched": self.matched,
            "acted": self.acted,
            "already": self.already,
            "refused": self.refused,
            "seconds": round(self.seconds, 1),
        }


class _Checkpoint:
    """The bulk run's id and the sagas it acted on, in a file (appended, one id a line)."""

    def __init__(self, path: Path | None, query: str, action: str) -> None:
        self.path = path
        self.done: set[str] = set()
        self.run = uuid.uuid4().hex[:12]
        if path is None:
            return
        if path.exists():
            lines = path.read_text().splitlines()
            head = json.loads(lines[0]) if lines else {}
            if head and (head.get("query"), head.get("action")) != (query, action):
                raise ValueError(
                    f"checkpoint {path} is of another run ({head.get('action')} "
                    f"{head.get('query')!r}): name a new file"
                )
            self.run = head.get("run", self.run)
            self.done = {line for line in lines[1:] if line}
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"run": self.run, "query": query, "action": action}) + "\n")

    def record(self, workflow_id: str) -> None:
        self.done.add(workflow_id)
        if self.path is not None:
            with self.path.open("a") as out:
                out.write(workflow_id + "\n")


async def act_on_held(
    client: Client,
    action: HeldAction,
    query: str | None = None,
    *,
    per_second: float = 5.0,
    dry_run: bool = False,
    checkpoint: Path | None = None,
    note: str = "",
    by: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BulkSummary:
    """Redrive (or compensate) every held saga that ``query`` finds.

    Args:
        client: A client of the sagas' namespace.
        action: ``redrive`` or ``compensate``.
        query: A visibility query narrowing the held sagas (``SagaName = 'OrderSaga' AND
            SagaStep = 'charge-payment'``); it is joined to ``SagaStatus = 'HELD'``.
        per_second: At most this many sagas a second (the recovered participant's rate).
        dry_run: Count the matching sagas and stop.
        checkpoint: A file recording the run: run again with the same file after the process
            died, and the sagas acted on are skipped (each action's id is the run's, so a saga
            acted on just before the death is not acted on twice either).
        note: Why, for each saga's audit trail.
        by: Who (default: ``user@host``).
        progress: Called with (done, total) after each saga.

    Raises:
        ValueError: ``per_second`` is not positive, or the checkpoint is another run's.
    """
    if not per_second > 0:
        raise ValueError("per_second must be positive")
    full = held_query(query)
    summary = BulkSummary(query=full)
    summary.matched = (await client.count_workflows(full)).count
    if dry_run:
        return summary
    began = time.monotonic()
    marks = _Checkpoint(checkpoint, full, action)
    summary.already = len(marks.done)
    gap, next_at = 1.0 / per_second, time.monotonic()
    who = by or operator()
    total = summary.matched
    async for execution in client.list_workflows(full):
        workflow_id = execution.id
        if workflow_id in marks.done:
            continue
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at = max(next_at + gap, time.monotonic())
        resolution = Resolution(
            action=_UPDATE[action],
            note=note,
            by=who,
            id=f"bulk-{marks.run}:{workflow_id}",
        )
        try:
            await _resolve(client, workflow_id, resolution)
        except WorkflowUpdateFailedError as err:
            summary.refused[workflow_id] = str(getattr(err.cause, "message", err.cause) or err)
        except RPCError as err:  # ended meanwhile, say
            summary.refused[workflow_id] = err.message
        else:
            summary.acted += 1
        marks.record(workflow_id)
        if progress is not None:
            progress(summary.acted + len(summary.refused), max(total, summary.acted))
    summary.seconds = time.monotonic() - began
    return summary
