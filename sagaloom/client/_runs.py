"""Client-side helpers: connect with the pydantic converter, start a saga, read its outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import traceback
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, TypeVar, overload
from urllib.parse import quote

from pydantic import BaseModel
from temporalio.client import (
    Client,
    Interceptor,
    Plugin,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.converter import PayloadCodec
from temporalio.envconfig import ClientConfig
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    TerminatedError,
    WorkflowAlreadyStartedError,
)
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from sagaloom._config._settings import ConfigError, setting
from sagaloom._encoding._codec import codec_from_env
from sagaloom._encoding._converter import converter
from sagaloom._saga._definition import Saga, SagaInputError
from sagaloom._saga._model import (
    SAGA_COMPENSATED,
    SAGA_COMPENSATION_FAILED,
    SAGA_ENDED_FIRST,
    SAGA_NEEDS_ATTENTION,
    SagaReport,
    SagaStatus,
)
from sagaloom._wire._names import (
    DEFAULT_TASK_QUEUE,
    KEY_EARLY_MEMO,
    PAYLOADS_MEMO,
    SAGA_KEY,
    SAGA_NAME,
    SAGALOOM_VERSION,
    WAIT_UPDATE,
)
from sagaloom._wire._release import VERSION
from sagaloom.client._history import saga_status
from sagaloom.client._keydesk import desk_of
from sagaloom.storage._stores import PayloadStore

__all__ = [
    "DEFAULT_UI",
    "EarlyAnswer",
    "Outcome",
    "SagaAlreadyRan",
    "connect",
    "outcome",
    "run",
    "start_attributes",
    "start_saga",
    "ui_link",
]

DEFAULT_UI = "http://localhost:8233"
"""Web UI of the embedded dev server."""
MAX_INPUT_BYTES = 2_000_000
"""Largest saga input ``start_saga`` sends without a payload store (Temporal rejects payloads
over 2 MB); with one, ``SAGALOOM_MAX_INPUT_BYTES`` (100 MB unless set)."""

InputT = TypeVar("InputT", bound=BaseModel)


async def connect(
    address: str | None = None,
    namespace: str | None = None,
    *,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
    plugins: Sequence[Plugin] = (),
    codec: PayloadCodec | None = None,
    encode_failures: bool | None = None,
    payloads: PayloadStore | None = None,
) -> Client:
    """Connect with sagaloom's data converter: pydantic payloads, tracebacks only for bugs.

    What is not given comes from the environment, as for every sagaloom client and worker
    (docs: Configuration): ``TEMPORAL_ADDRESS`` (else ``localhost:7233``),
    ``TEMPORAL_NAMESPACE`` (else ``default``), the encryption keys
    (``SAGALOOM_ENCRYPTION_KEYS``), ``SAGALOOM_ENCODE_FAILURES`` and the payload store
    (``SAGALOOM_PAYLOAD_STORE``, on NATS when ``SAGALOOM_NATS_URL`` is set); TLS and API keys from
    Temporal's own variables (``TEMPORAL_API_KEY``, ``TEMPORAL_TLS_*``) or profile file.

    Args:
        address: Frontend ``host:port``.
        namespace: Namespace.
        runtime: A Temporal runtime (for example one exporting metrics).
        interceptors: Client interceptors; those that are also worker interceptors apply to
            workers built on this client too.
        plugins: Client plugins (for example ``OpenTelemetryPlugin``); those that are also
            worker plugins apply to workers built on this client too.
        codec: A payload codec (for example ``EncryptionCodec``); workers built on this client
            use it too.
        encode_failures: Move failure messages into encoded (encrypted) attributes.
        payloads: Where payloads over the threshold go (the same store as the workers').

    Raises:
        ConfigError: a variable is malformed (it is named).
    """
    env = os.environ
    address = address or setting("address").read(env)
    namespace = namespace or setting("namespace").read(env)
    codec = codec or codec_from_env(env)
    if encode_failures is None:
        encode_failures = bool(setting("encode_failures").read(env))
    try:
        payloads = payloads or PayloadStore.from_env(env)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    # TLS, mTLS and API keys come from Temporal's standard environment configuration
    # (TEMPORAL_API_KEY, TEMPORAL_TLS_CLIENT_CERT_PATH, ... or the profile file).
    profile = ClientConfig.load_client_connect_config()
    return await Client.connect(
        address,
        namespace=namespace,
        api_key=profile.get("api_key"),
        tls=profile.get("tls", False),
        rpc_metadata=profile.get("rpc_metadata") or {},
        data_converter=converter(
            codec, encode_failures=encode_failures, storage=payloads.external_storage()
        ),
        runtime=runtime,
        interceptors=interceptors,
        plugins=plugins,
    )


def ui_link(workflow_id: str, *, namespace: str = "default", ui: str = DEFAULT_UI) -> str:
    """The Web UI page of a saga run."""
    return f"{ui}/namespaces/{quote(namespace)}/workflows/{quote(workflow_id, safe='')}"


@overload
async def start_saga(
    client: Client,
    saga: Saga[InputT],
    data: InputT | dict[str, Any] | str,
    *,
    id: str | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
    request_eager_start: bool = False,
    wait_for: None = None,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE,
) -> WorkflowHandle[Any, SagaReport]: ...


@overload
async def start_saga(
    client: Client,
    saga: Saga[InputT],
    data: InputT | dict[str, Any] | str,
    *,
    id: str | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
    request_eager_start: Literal[False] = False,
    wait_for: str,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE,
) -> EarlyAnswer: ...


async def start_saga(
    client: Client,
    saga: Saga[InputT],
    data: InputT | dict[str, Any] | str,
    *,
    id: str | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
    request_eager_start: bool = False,
    wait_for: str | None = None,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE,
) -> WorkflowHandle[Any, SagaReport] | EarlyAnswer:
    """Validate ``data`` and start ``saga``; nothing starts if the input is invalid.

    With ``wait_for``, answer early: one round trip (Update-with-Start) that starts the saga
    and returns once step ``wait_for`` is done, with its output — or once the saga has failed
    and compensated, if that comes first. A saga already running under the same id (the same
    business key) is not started again: the call attaches to it; one that completed is not run
    again either (its report answers), while one that compensated, failed or was cancelled is
    started anew. The rest of the saga goes on after the answer; ``outcome(answer.handle)``
    waits for its end.

    **A business key runs once.** A second start under the id of a saga that already ran
    (completed, compensated, failed, cancelled) raises :class:`SagaAlreadyRan`: a new run would
    send the participants the same idempotency keys (``<workflow id>:<step>``), and they would
    answer with the first run's answers, whatever the new input says. Start it under a new key,
    or, for a saga held at a failed step, redrive it (``saga redrive``). With ``wait_for``, such
    a start answers from the first run instead (an idempotent retry of the same request).

    A saga with exclusive keys (without ``wait_for``) finds its free keys taken when it starts:
    they are taken here, in order, up to the first one someone holds, and listed in its memo.

    Args:
        client: A connected client (see :func:`connect`).
        saga: The saga definition.
        data: Its input: a model, a dict or a JSON string.
        id: Workflow id; defaults to ``<saga name>-<business key>`` (one run per business key).
        task_queue: Where its workers poll.
        request_eager_start: Ask the server to hand the first task to a local worker (not
            with ``wait_for``).
        wait_for: Name of the step whose output to wait for.
        id_reuse_policy: Whether a run under an id that ran before may start (without
            ``wait_for``). ``REJECT_DUPLICATE`` (the default) is the rule above; another policy
            lets a new run start under the old id, and its participants then see the old keys.

    Returns:
        The handle of the started run; with ``wait_for``, an :class:`EarlyAnswer`.

    Raises:
        SagaInputError: naming each field that failed validation, an input over the limit
            (``SAGALOOM_MAX_INPUT_BYTES`` with a payload store, else Temporal's 2 MB), or a
            ``wait_for`` step the saga does not have.
        SagaAlreadyRan: a saga under this id ran and closed (the rule above).
        WorkflowAlreadyStartedError: a saga under this id is running (without ``wait_for``).
    """
    parsed = saga.parse_input(data)
    stored = client.data_converter.external_storage is not None
    _check_size(saga, parsed, stored)
    keys = saga.exclusive_keys(parsed)  # a key function that fails, fails here, before the start
    saga.check_items(parsed)  # so do a fan-out's duplicate or invalid item keys
    key = saga.key(parsed) if saga.key else None
    if id is None:
        id = f"{saga.name}-{key}" if key else f"{saga.name}-{uuid.uuid4()}"
    summary = saga.description or saga.name
    summary = f"{summary} · {key}" if key else summary
    if wait_for is None:
        desk = desk_of(client)
        early = await desk.take_early(keys, id) if keys else None  # the saga need not ask
        try:
            return await client.start_workflow(
                saga.name,
                parsed,
                id=id,
                task_queue=task_queue,
                result_type=SagaReport,
                search_attributes=start_attributes(saga, parsed),
                static_summary=summary,
                request_eager_start=request_eager_start,
                id_reuse_policy=id_reuse_policy,
                memo=_memo(early, stored),
            )
        except (WorkflowAlreadyStartedError, RPCError) as err:
            refused = not isinstance(err, RPCError) or err.status == RPCStatusCode.INVALID_ARGUMENT
            if early and refused:  # surely not started: the keys go back
                with contextlib.suppress(RPCError):  # (else its shard frees them in 10 s)
                    await desk.drop_early(early, id)
            if isinstance(err, WorkflowAlreadyStartedError):
                await _refuse_closed(client, saga.name, id)
            raise
    if wait_for not in saga.position:
        steps = ", ".join(s.name for s in saga.steps)
        raise SagaInputError(saga.name, [("wait_for", f"no step {wait_for!r}; steps: {steps}")])
    start: WithStartWorkflowOperation[Any, SagaReport] = WithStartWorkflowOperation(
        saga.name,
        parsed,
        id=id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        result_type=SagaReport,
        search_attributes=start_attributes(saga, parsed),
        static_summary=summary,
        memo=_memo(None, stored),
    )
    try:
        output = await client.execute_update_with_start_workflow(
            WAIT_UPDATE, wait_for, start_workflow_operation=start
        )
    except WorkflowAlreadyStartedError:
        # it ran already: answer from its report, never run a business key twice
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await start.workflow_handle()  # (retrieve the operation's own copy of the error)
        done = client.get_workflow_handle(id, result_type=SagaReport)
        ended = await outcome(done)
        if ended.report is not None and ended.status is SagaStatus.COMPLETED:
            return EarlyAnswer(done, wait_for, ended.report.outputs.get(wait_for), None)
        return EarlyAnswer(done, wait_for, None, ended)
    except WorkflowUpdateFailedError as err:
        handle = await start.workflow_handle()
        ended = _failure_outcome(id, err.cause) or Outcome(
            id, SagaStatus.FAILED, None, str(err.cause or err)
        )
        return EarlyAnswer(handle, wait_for, None, ended)
    return EarlyAnswer(await start.workflow_handle(), wait_for, output, None)


def _check_size(saga: Saga[Any], parsed: BaseModel, stored: bool) -> None:
    """Refuse an input over the limit before anything starts (naming the limit and the way on).

    Raises:
        SagaInputError: the input is over ``SAGALOOM_MAX_INPUT_BYTES`` (with a store) or over
            Temporal's 2 MB (without one).
    """
    size = len(parsed.model_dump_json().encode())  # bytes, as Temporal counts: "€" is 3
    most = setting("max_input_bytes").read(os.environ) if stored else MAX_INPUT_BYTES
    if size <= most:
        return
    if stored:
        why = (
            f"{size / 1e6:.1f} MB (UTF-8 bytes), over SAGALOOM_MAX_INPUT_BYTES ({most / 1e6:g} "
            "MB): raise it, or pass a reference (an id, a URL) instead of the data"
        )
    else:
        why = (
            f"{size / 1e6:.1f} MB (UTF-8 bytes); Temporal refuses payloads over 2 MB and no "
            "payload store is on: set SAGALOOM_PAYLOAD_STORE (or SAGALOOM_NATS_URL), or pass a "
            "reference (an id, a URL) instead of the data"
        )
    raise SagaInputError(saga.name, [("<input>", why)])


def _memo(early: Any, stored: bool) -> dict[str, Any] | None:
    memo: dict[str, Any] = {KEY_EARLY_MEMO: early} if early else {}
    if stored:
        memo[PAYLOADS_MEMO] = True
    return memo or None


class SagaAlreadyRan(WorkflowAlreadyStartedError):
    """A saga under this workflow id already ran: a business key runs once.

    Attributes:
        status: How that run ended.
    """

    def __init__(self, saga: str, workflow_id: str, run_id: str, status: SagaStatus) -> None:
        super().__init__(workflow_id, saga, run_id=run_id)
        self.status = status
        self._message = (
            f"saga {workflow_id} already ran ({status.value}, run {run_id}): a business key "
            "runs once, since a new run would send its participants the same idempotency keys "
            "and get the first run's answers back. Start it under a new key; a saga held at a "
            "failed step is redriven instead (saga redrive)"
        )
        self.args = (self._message,)


async def _refuse_closed(client: Client, saga: str, workflow_id: str) -> None:
    """Raise :class:`SagaAlreadyRan` when the saga under ``workflow_id`` is closed.

    Raises:
        SagaAlreadyRan: it is.
    """
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
    except RPCError:
        return  # cannot tell: the server's own error stands
    if description.status is not WorkflowExecutionStatus.RUNNING:
        status = saga_status(description)
        raise SagaAlreadyRan(saga, workflow_id, description.run_id, status) from None


@dataclass(frozen=True)
class EarlyAnswer:
    """What an answer-early start (``start_saga(..., wait_for=STEP)``) heard."""

    handle: WorkflowHandle[Any, SagaReport]
    """The saga run (started by this call, or the one already running under its id)."""
    step: str
    """The step waited for."""
    output: Any
    """The step's output (JSON-able), when it was done first."""
    ended: Outcome | None
    """How the saga ended (compensated, parked, cancelled) when that came before the step."""

    @property
    def ok(self) -> bool:
        """The step was done: its output is here and the saga goes on."""
        return self.ended is None


def start_attributes(saga: Saga[InputT], data: InputT | dict[str, Any]) -> TypedSearchAttributes:
    """The search attributes a saga run starts with: its name, its business key, the release.

    With them set at start the workflow need not write them itself. ``SagaStatus`` is not set
    at start: a running or completed saga is found by its execution status (``ExecutionStatus
    = "Running"`` / ``"Completed"``), and the attribute is written only when a saga leaves the
    happy path (COMPENSATING, COMPENSATED, NEEDS_ATTENTION, FAILED, CANCELED), so a saga that
    completes costs no visibility write of its own.
    """
    parsed = saga.parse_input(data)
    key = saga.key(parsed) if saga.key else None
    pairs = [
        SearchAttributePair(SAGA_NAME, saga.name),
        SearchAttributePair(SAGALOOM_VERSION, VERSION),
    ]
    if key:
        pairs.append(SearchAttributePair(SAGA_KEY, key))
    return TypedSearchAttributes(pairs)


@dataclass(frozen=True)
class Outcome:
    """How a saga run ended, as a user would read it."""

    workflow_id: str
    """The run's workflow id."""
    status: SagaStatus
    """COMPLETED, COMPENSATED, NEEDS_ATTENTION, CANCELED or FAILED."""
    report: SagaReport | None
    """The saga's report (completed, compensated or needing attention)."""
    error: str | None = None
    """Why it did not complete."""


async def outcome(handle: WorkflowHandle[Any, Any]) -> Outcome:
    """Wait for a saga to end and say how it ended.

    Any handle works: one from :func:`start_saga`, or ``client.get_workflow_handle(id)``.
    """
    wid = handle.id
    try:
        report = await handle.result()
    except WorkflowFailureError as err:
        cause = err.cause
        ended = _failure_outcome(wid, cause)
        if ended is not None:
            return ended
        if isinstance(cause, CancelledError):
            return Outcome(wid, SagaStatus.CANCELED, None, "cancelled")
        if isinstance(cause, TerminatedError):
            return Outcome(wid, SagaStatus.FAILED, None, f"terminated: {cause.message}")
        return Outcome(wid, SagaStatus.FAILED, None, str(cause or err))
    if not isinstance(report, SagaReport):  # a handle without result_type: a plain dict
        report = SagaReport.model_validate(report)
    return Outcome(wid, report.status, report)


def _failure_outcome(workflow_id: str, cause: BaseException | None) -> Outcome | None:
    """The outcome an engine failure carries (its report as first detail), else None."""
    if not isinstance(cause, ApplicationError) or cause.type not in _REPORTED:
        return None
    try:
        report = SagaReport.model_validate(cause.details[0]) if cause.details else None
    except ValueError:
        report = None
    status = report.status if report else SagaStatus.COMPENSATED
    return Outcome(workflow_id, status, report, cause.message)


_REPORTED = (SAGA_COMPENSATED, SAGA_COMPENSATION_FAILED, SAGA_NEEDS_ATTENTION, SAGA_ENDED_FIRST)
"""Failure types whose first detail is the saga's report."""


def run(main: Coroutine[Any, Any, Any]) -> NoReturn:
    """Run an asyncio program that uses Temporal, then exit the process at once.

    ``asyncio.run(main)``, then exit without interpreter finalization: the Temporal runtime's
    native threads can call into Python while the interpreter finalizes and abort a finished
    program ("Fatal Python error: PyGILState_Release", sdk-python#300). The exit code is 0, or
    the integer ``main`` returns; an exception is printed and exits 1.
    """
    code = 0
    try:
        result = asyncio.run(main)
        code = result if isinstance(result, int) else 0
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
