"""How users define a saga: steps, their actions and compensations, retry policies and timeouts.

Definitions are plain frozen dataclasses checked when they are built, so a broken saga fails at
import (on the client, in the worker and in tests) and never at run time. Side-effect free.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.common import RetryPolicy

from sagaloom._saga._graph import Graph, GraphError, StepKind, resolve_graph
from sagaloom._saga._holding import ON_FAILURE, OnFailure
from sagaloom._wire._protocol import subject_problem

_SERVICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

__all__ = [
    "Activity",
    "ChildSaga",
    "Command",
    "ForEach",
    "Http",
    "ItemContext",
    "Saga",
    "SagaDefinitionError",
    "SagaInputError",
    "Step",
    "StepContext",
    "StepDefaults",
    "Timer",
    "UndoContext",
]

InputT = TypeVar("InputT", bound=BaseModel)
ModelT = TypeVar("ModelT", bound=BaseModel)


def _check_for_each(where: str, step: Step) -> None:
    """Check a :class:`ForEach` step's options."""
    each = step.action
    assert isinstance(each, ForEach)
    if step.compensation is not None:
        raise SagaDefinitionError(
            f"{where}: a ForEach step undoes item by item: give ForEach(compensation=...)"
        )
    if step.reply_timeout is not None:
        raise SagaDefinitionError(f"{where}: a ForEach step takes no reply_timeout")
    if not isinstance(each.do, Http | Activity):
        raise SagaDefinitionError(f"{where}: ForEach(do=...) must be Http or Activity")
    if each.compensation is not None and not isinstance(each.compensation, Http | Activity):
        raise SagaDefinitionError(f"{where}: ForEach(compensation=...) must be Http or Activity")
    if not callable(each.items):
        raise SagaDefinitionError(f"{where}: ForEach(items=...) must be a builder")
    if isinstance(each.max_concurrency, bool) or not 1 <= each.max_concurrency <= 1000:
        raise SagaDefinitionError(f"{where}: ForEach max_concurrency must be 1 to 1000")
    if isinstance(each.batch_size, bool) or not 1 <= each.batch_size <= 2000:
        raise SagaDefinitionError(f"{where}: ForEach batch_size must be 1 to 2000")
    tolerate = each.tolerate
    if isinstance(tolerate, bool) or not isinstance(tolerate, int | float):
        raise SagaDefinitionError(f"{where}: ForEach tolerate must be a count or a fraction")
    if isinstance(tolerate, float) and not 0.0 <= tolerate <= 1.0:
        raise SagaDefinitionError(f"{where}: ForEach tolerate as a fraction must be 0.0 to 1.0")
    if isinstance(tolerate, int) and tolerate < 0:
        raise SagaDefinitionError(f"{where}: ForEach tolerate must not be negative")


class SagaDefinitionError(ValueError):
    """A saga definition is invalid; the message names the saga and the step."""


class SagaInputError(ValueError):
    """A saga's input failed validation; the message names every offending field."""

    def __init__(self, saga: str, problems: Sequence[tuple[str, str]]) -> None:
        self.saga = saga
        """The saga whose input was rejected."""
        self.problems = list(problems)
        """``(field, message)`` pairs, field as a dotted path."""
        detail = "; ".join(f"{name}: {msg}" for name, msg in self.problems)
        super().__init__(f"invalid input for saga {saga!r}: {detail}")


@dataclass(frozen=True)
class StepContext(Generic[InputT]):
    """What a forward action's builders see: the saga input and earlier steps' outputs."""

    saga_id: str
    """Workflow id of this saga run."""
    input: InputT
    """The saga's validated input."""
    outputs: Mapping[str, Any]
    """JSON-able outputs of the steps completed so far, by step name."""

    def output(self, step: str, model: type[ModelT]) -> ModelT:
        """Return an earlier step's output parsed as ``model``.

        Args:
            step: Name of a completed earlier step.
            model: Pydantic model of that step's output.

        Returns:
            The parsed output.
        """
        return model.model_validate(self.outputs[step])


@dataclass(frozen=True)
class UndoContext(StepContext[InputT]):
    """What a compensation's builders see: the step's context, what the step got and gave."""

    step_input: Any = None
    """The request body (HTTP) or argument (activity) the forward action was called with."""
    step_output: Any = None
    """The forward action's JSON-able output, or None when it did not complete (it may still
    have taken effect, for example when it timed out)."""


Builder = Callable[[Any], Any]
"""A function of a :class:`StepContext` (or :class:`UndoContext`) that returns a value."""


@dataclass(frozen=True)
class Http:
    """Call an HTTP participant service through the engine's pooled HTTP activity.

    Every call carries an ``Idempotency-Key`` header derived from the workflow id and the step
    name (the compensation gets its own). Connect errors, timeouts, 5xx, 408 and 429 are retried
    under the step's policy (``Retry-After`` honoured); any other 4xx fails the step at once.
    """

    service: str
    """Logical service name; each worker maps it to a base URL in its configuration."""
    method: str
    """HTTP method, for example ``"POST"``."""
    path: str | Builder
    """Path under the service's base URL, or a builder returning it."""
    body: Builder | None = None
    """Builder returning the JSON body: a pydantic model or a dict."""

    @property
    def kind(self) -> str:
        """The action kind shown in the saga state."""
        return "http"


@dataclass(frozen=True)
class Command:
    """Send a command to an event-driven participant over NATS JetStream, and wait for its reply.

    The command is published to ``sagaloom.cmd.<subject>`` (stream ``SAGALOOM_COMMANDS``) with
    ``Nats-Msg-Id`` set, so a retried publish is stored once, and the step's idempotency key,
    correlation id and reply token as headers; the participant publishes its reply to
    ``sagaloom.replies`` (see ``sagaloom.participants`` for the protocol). The step waits for
    the reply up to its ``reply_timeout`` (5 minutes by default); the reply's data is the step's
    output, a negative reply or none in time fails it. As a compensation, the undo command's
    reply is awaited the same way. Workers need ``SAGALOOM_NATS_URL``.

    When no reply comes in time and no consumer takes the service's commands, the participant
    is down: the service's breaker opens and the step waits for it (up to the outage budget)
    instead of failing, as an HTTP step does.
    """

    subject: str
    """Where the participant listens, for example ``"shipping.create"`` (published under
    ``sagaloom.cmd.``)."""
    body: Builder | None = None
    """Builder returning the JSON body: a pydantic model or a dict."""
    service: str | None = None
    """The participant's name for its breaker and outage budget; None: the subject's first
    token (``"shipping"`` for ``"shipping.create"``)."""

    @property
    def kind(self) -> str:
        """The action kind shown in the saga state."""
        return "command"

    @property
    def service_name(self) -> str:
        """The participant service this command goes to (its breaker's name)."""
        return self.service or self.subject.split(".", 1)[0]


@dataclass(frozen=True)
class Activity:
    """Call any Temporal activity registered on the workers."""

    activity: str | Callable[..., Any]
    """The activity function, or its registered name."""
    arg: Builder | None = None
    """Builder returning the activity's single argument; None calls it without arguments."""

    @property
    def kind(self) -> str:
        """The action kind shown in the saga state."""
        return "activity"


@dataclass(frozen=True)
class Timer:
    """Wait on a durable timer (for example a cooling-off period). Has nothing to undo."""

    duration: timedelta | Builder
    """How long to wait, or a builder returning it."""

    @property
    def kind(self) -> str:
        """The action kind shown in the saga state."""
        return "timer"


@dataclass(frozen=True)
class ChildSaga:
    """Run another saga as this step, as a unit.

    The child saga runs its own steps (a child workflow, visible in the Web UI). If it fails,
    it compensates itself and the step fails. If it completes, it stays open until the parent
    finishes: when a later step of the parent fails, the parent has the child compensate as a
    unit — its own steps in its own reverse order — and when the parent completes, it releases
    the child, which then completes too.
    """

    saga: Saga[Any]
    """The child saga's definition (its workflow must be registered on the workers)."""
    input: Builder
    """Builder returning the child saga's input."""

    @property
    def kind(self) -> str:
        """The action kind shown in the saga state."""
        return "saga"


@dataclass(frozen=True)
class ItemContext(UndoContext[InputT]):
    """What the builders of a :class:`ForEach` item's action and compensation see.

    The step's context (saga input, earlier outputs), plus the item, its index and its key;
    a compensation's builders also get what the item's action got and gave
    (``step_input``, ``step_output``).
    """

    item: Any = None
    """The item (one element of the list ``ForEach.items`` returned)."""
    index: int = 0
    """Its place in that list, from 0."""
    item_key: str = ""
    """Its key (``ForEach.key``, or its index): part of its idempotency key."""


ItemAction = Http | Activity
"""What a :class:`ForEach` does for one item (and undoes)."""

MAX_ITEMS = 100_000
"""Most items one :class:`ForEach` step takes (10,000 are measured in docs/benchmarks.md)."""


@dataclass(frozen=True)
class ForEach:
    """Act on each item of a list known only at run time: book every leg, reserve every line.

    Each item is a sub-step with its own idempotency key (``<saga id>:<step>:items-<n>:<item
    key>``, ``:compensate`` for its undo), the step's retries and timeouts, and its own
    compensation. Items run at most ``max_concurrency`` at a time, in batches of
    ``batch_size`` items, each batch a child workflow (``sagaloom.Items``, visible in the Web
    UI), so 10,000 items stay far under Temporal's history and pending-activity limits. The
    step's output is the list of item outputs in input order (None for an item that failed).

    When the saga fails later (or is cancelled, or the fan-out fails), exactly the items that
    took or may have taken effect are compensated: those done, failed after a timeout or out of
    retries, or cancelled while running; never those refused (a non-retryable error) or not
    started. ``tolerate`` lets some items fail without failing the step: the failed items are
    reported in the step table and those that may have taken effect are compensated at once.
    """

    items: Builder
    """Builder (of the :class:`StepContext`) returning the list of items: models, dicts or
    plain values, at most :data:`MAX_ITEMS`."""
    do: ItemAction
    """What to do for each item; its builders get an :class:`ItemContext`."""
    compensation: ItemAction | None = None
    """What undoes one item; its builders get an :class:`ItemContext` with the item's
    ``step_input`` and ``step_output``. None: nothing to undo."""
    key: Callable[[Any], str] | None = None
    """An item's key (``lambda leg: leg.leg_id``): unique in the list, 1 to 200 printable
    characters; duplicates fail the saga with ``SagaInputError``. None: the item's index."""
    max_concurrency: int = 10
    """Most items running at once (1 to 1,000)."""
    tolerate: int | float = 0
    """How many items may fail without failing the step: a count (``3``) or a fraction of the
    items (``0.1``; ``1.0``: every item may fail)."""
    batch_size: int = 500
    """Items per batch workflow (1 to 2,000): each batch's history stays bounded."""

    @property
    def kind(self) -> str:
        """The action kind shown in the saga state."""
        return "for-each"

    def allowed_failures(self, total: int) -> int:
        """How many of ``total`` items may fail without failing the step."""
        if isinstance(self.tolerate, float):
            return int(self.tolerate * total + 1e-9)
        return self.tolerate

    def item_keys(self, saga: str, items: Sequence[Any]) -> list[str]:
        """The key of each item, checked.

        Raises:
            SagaInputError: too many items, a key function that raised, a key that is not a
                string of 1 to 200 printable characters, or two items with one key (the
                problem names ``items[<index>]``).
        """
        if len(items) > MAX_ITEMS:
            raise SagaInputError(saga, [("items", f"{len(items)} items; at most {MAX_ITEMS}")])
        keys: list[str] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            where = f"items[{index}]"
            if self.key is None:
                key: Any = str(index)
            else:
                try:
                    key = self.key(item)
                except Exception as err:  # a user's function: say what it raised, and where
                    raise SagaInputError(
                        saga, [(where, f"the key function raised {type(err).__name__}: {err}")]
                    ) from None
            if not isinstance(key, str) or not 0 < len(key) <= 200 or not key.isprintable():
                raise SagaInputError(saga, [(
                    where, f"key {key!r}: must be a string of 1 to 200 printable characters"
                )])  # fmt: skip
            if key in seen:
                raise SagaInputError(
                    saga, [(where, f"duplicate item key {key!r} (also items[{seen[key]}])")]
                )
            seen[key] = index
            keys.append(key)
        return keys


Action = Http | Command | Activity | Timer | ChildSaga | ForEach
Compensation = Http | Command | Activity


@dataclass(frozen=True)
class StepDefaults:
    """Timeouts and retry policies for steps and compensations.

    The engine's defaults are ``StepDefaults()``; a saga overrides them with its own ``defaults``
    and a step overrides those with its own fields.
    """

    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=30),
            maximum_attempts=5,
        )
    )
    """Retry policy of forward actions."""
    start_to_close: timedelta = timedelta(seconds=30)
    """Limit of one attempt of a forward action."""
    schedule_to_close: timedelta = timedelta(minutes=10)
    """Total budget of a forward action, retries included."""
    heartbeat: timedelta = timedelta(seconds=10)
    """Heartbeat timeout of HTTP calls: a call on a worker that died is retried after this."""
    compensation_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=60),
            maximum_attempts=0,
        )
    )
    """Retry policy of compensations: by default retry (within their budget) until done."""
    compensation_start_to_close: timedelta = timedelta(seconds=30)
    """Limit of one attempt of a compensation."""
    compensation_budget: timedelta = timedelta(minutes=30)
    """Total time a compensation may keep failing, retries included, before the saga parks in
    NEEDS_ATTENTION with the last error for an operator (``saga resolve --retry`` resumes it;
    with ``continue_on_compensation_error`` it is recorded as failed instead)."""


@dataclass(frozen=True)
class Step:
    """One step of a saga: a forward action and, optionally, the action that undoes it.

    The compensation is registered before the forward action starts, so a step that took effect
    and then timed out is still undone.
    """

    name: str
    """Unique within the saga; shown in the Web UI and used in idempotency keys."""
    action: Action
    """What the step does."""
    compensation: Compensation | None = None
    """What undoes it; None when there is nothing to undo."""
    output: type[BaseModel] | None = None
    """Pydantic model the action's result must match; a mismatch fails the step."""
    retry: RetryPolicy | None = None
    """Overrides the saga's retry policy for the forward action."""
    start_to_close: timedelta | None = None
    """Overrides the limit of one attempt."""
    schedule_to_close: timedelta | None = None
    """Overrides the total budget, retries included."""
    non_retryable_errors: Sequence[str] = ()
    """Error types (``ApplicationError.type`` or exception class names) that fail it at once."""
    compensation_retry: RetryPolicy | None = None
    """Overrides the saga's retry policy for the compensation."""
    reply_timeout: timedelta | None = None
    """Set for an asynchronous participant: after the command, the step waits this long for
    the participant's :class:`~sagaloom.Reply` (the ``reply`` signal, correlated by the
    command's idempotency key). Its data becomes the step's output; no reply in time, or a
    negative one, fails the step like any failure. Late and duplicate replies are ignored."""
    after: Sequence[str] | None = None
    """Steps this one runs after. None: the step before it in the list (a plain list is a
    sequence); ``()``: none, it starts at once. Steps whose dependencies are done run in
    parallel."""
    kind: StepKind = "compensatable"
    """``compensatable`` (undone on failure), ``pivot`` (the point of no return: at most one) or
    ``retriable`` (after the pivot; no compensation; retries forward, parks when out of budget)."""
    when: Callable[[Any], bool] | None = None
    """Condition on the :class:`StepContext` (saga input, earlier outputs): when it is false the
    step is skipped, and a skipped step is never compensated."""
    patch: str | None = None
    """Set when the step is added to a saga that already has runs in flight: a patch id such as
    ``"add-fraud-check"``. Runs started before the change skip the step (they replay as they
    ran); new runs take it. See ``workflow.patched``."""
    local: bool | None = None
    """Run the step and its compensation as local activities (the fast path); None follows
    the saga's ``local_activities``. For short, idempotent calls: they retry inside the workflow
    task and show as markers in history."""
    breaker: bool | None = None
    """Wait, don't compensate, while this step's HTTP service is down (its breaker is open): no
    retries are spent meanwhile, up to the service's outage budget. None: the saga's ``breaker``
    (on by default); False opts this step out (it retries and compensates as the policy says)."""
    on_failure: OnFailure | None = None
    """What the step does when it fails for good: ``"compensate"``, ``"hold"`` (an unexpected
    failure holds the saga here for an operator; a refusal compensates) or ``"hold-all"``.
    None: the saga's ``on_failure``. (docs: Operating, Incidents.)"""


def step_actions(step: Step) -> tuple[Action, ...]:
    """Every action a step may run: its action, its compensation, a fan-out's item actions."""
    parts: list[Any] = [step.action, step.compensation]
    if isinstance(step.action, ForEach):
        parts += [step.action.do, step.action.compensation]
    return tuple(p for p in parts if p is not None)


def undoable(step: Step) -> bool:
    """Whether a step has something to undo (its compensation is registered before it runs)."""
    if isinstance(step.action, ForEach):
        return step.action.compensation is not None
    return step.compensation is not None or isinstance(step.action, ChildSaga)


@dataclass(frozen=True)
class Saga(Generic[InputT]):
    """A saga definition: a named sequence of steps over a typed input.

    Turn it into a Temporal workflow class with :func:`sagaloom.saga_workflow`.
    """

    name: str
    """Workflow type name, for example ``"OrderSaga"``."""
    input: type[InputT]
    """Pydantic model of the saga's input; validated at the client and again in the workflow."""
    steps: Sequence[Step]
    """The steps, run in order; compensated in reverse order of the ones that started."""
    key: Callable[[InputT], str] | None = None
    """Business key of a run (for example the order id): shown in the UI and searchable."""
    description: str = ""
    """One line saying what the saga does; shown as the run's summary in the Web UI."""
    defaults: StepDefaults = field(default_factory=StepDefaults)
    """Timeouts and retry policies of its steps, unless a step overrides them."""
    local_activities: bool = False
    """Run every step as a local activity unless the step says otherwise (the fast path)."""
    parallel_compensation: bool = False
    """Run independent compensations at once (still in reverse topological order)."""
    continue_on_compensation_error: bool = False
    """When a compensation fails for good, keep compensating the rest and report every failure
    together (the saga ends FAILED, type ``SagaCompensationFailed``); without it, the saga parks
    for an operator at the first failure."""
    deadline: timedelta | None = None
    """Time the saga has, from its start, to finish its steps; when it passes, the running step
    is cancelled and the started steps are compensated (error type ``DeadlineExceeded``)."""
    events: bool = False
    """Publish the saga's life — started, each step completed or failed, each compensation,
    parked, resolved, completed, compensated, cancelled — as CloudEvents to the broker's
    ``SAGALOOM_EVENTS`` stream, each stored exactly once (workers need ``SAGALOOM_NATS_URL``).
    Off: nothing is published and nothing is recorded."""
    track_steps: bool = False
    """Mirror the running step into the ``SagaStep`` search attribute as the saga goes. Costs a
    visibility write per step (measured: 17 to 40% of the dev server's saga throughput, see
    docs/benchmarks.md); without it ``SagaStep`` is set only where a saga compensated, and
    the running step is still in the query and the UI's pending activities."""
    live_details: bool = True
    """Show the saga's step table as the run's current details (the Web UI's run page, the SDK's
    built-in metadata query). Kept in worker memory: no history event, no visibility write
    (measured cost in docs/benchmarks.md); off only to measure that cost."""
    breaker: bool = True
    """Steps calling an HTTP service wait while the service's breaker is open instead of
    spending retries and compensating (up to its outage budget; docs: Operating, Outages).
    False: every step retries and compensates as its policy says; a step may say otherwise."""
    exclusive: Callable[[InputT], str | Sequence[str]] | None = None
    """The saga's exclusive keys, from its input (``lambda t: [f"account:{t.source}",
    f"account:{t.target}"]``): sagas sharing a key run one at a time, in arrival order; sagas
    with disjoint keys are not slowed. The keys are taken before the first step, in one global
    order (no deadlock), and released however the saga ends. A key: 1 to 200 printable
    characters. Costs an activity per key and two signals (docs: Isolation)."""
    exclusive_timeout: timedelta | None = None
    """How long the saga may wait for its exclusive keys; past it, it fails before its first
    step (nothing to compensate), with an ``ExclusiveTimeout`` error naming the key and its
    holder. None: waits as long as it takes."""
    on_failure: OnFailure = "compensate"
    """What a step that fails for good does, unless the step says otherwise: ``"compensate"``
    (undo the started steps), ``"hold"`` (an unexpected failure — retries spent on 5xx, a
    timeout, an unknown outcome, a bug — holds the saga at the step, its earlier steps in place,
    until an operator redrives it, compensates it or marks the step done; a business refusal
    still compensates) or ``"hold-all"`` (refusals hold too). A held saga keeps its exclusive
    keys; its deadline still applies (when it passes, the saga compensates)."""
    notify_participants: bool = False
    """When the saga ends — completed, compensated, cancelled, failed — tell each HTTP service
    one of its steps called: ``POST <service>/sagaloom/saga-ended`` with ``{"saga_id",
    "status"}``, retried until answered (for days, by a small workflow of its own, so the saga
    ends at once), a 4xx taken as "not interested". Participants that hold semantic locks for
    the saga (``sagaloom.service``) release them then."""

    def __post_init__(self) -> None:
        """Check the definition and fail with an error naming the offending step."""
        object.__setattr__(self, "steps", tuple(self.steps))
        if not self.name.isidentifier():
            raise SagaDefinitionError(f"saga name {self.name!r} must be an identifier")
        if not self.steps:
            raise SagaDefinitionError(f"saga {self.name!r} has no steps")
        seen: set[str] = set()
        for step in self.steps:
            where = f"saga {self.name!r}, step {step.name!r}"
            if not step.name or any(ch.isspace() for ch in step.name):
                raise SagaDefinitionError(f"{where}: a step name must be non-empty, without spaces")
            if step.name in seen:
                raise SagaDefinitionError(f"{where}: duplicate step name")
            seen.add(step.name)
            if isinstance(step.action, Timer) and step.compensation is not None:
                raise SagaDefinitionError(f"{where}: a timer step has nothing to compensate")
            if isinstance(step.action, ChildSaga) and step.compensation is not None:
                raise SagaDefinitionError(
                    f"{where}: a child saga is compensated as a unit; it takes no compensation"
                )
            if not isinstance(step.action, Http | Command | Activity | Timer | ChildSaga | ForEach):
                raise SagaDefinitionError(
                    f"{where}: action must be Http, Command, Activity, Timer, ChildSaga or ForEach"
                )
            if isinstance(step.action, ForEach):
                _check_for_each(where, step)
            if step.compensation is not None and not isinstance(
                step.compensation, Http | Command | Activity
            ):
                raise SagaDefinitionError(
                    f"{where}: compensation must be Http, Command or Activity"
                )
            for part in (step.action, step.compensation):
                if isinstance(part, Command) and (problem := subject_problem(part.subject)):
                    raise SagaDefinitionError(f"{where}: {problem}")
                if isinstance(part, Command) and not _SERVICE_NAME.fullmatch(part.service_name):
                    raise SagaDefinitionError(
                        f"{where}: Command service {part.service_name!r}: letters, digits, "
                        "'-' and '_' only (it names the breaker and its settings)"
                    )
        for where, policy in [("saga", self.on_failure)] + [
            (f"step {s.name!r}", s.on_failure) for s in self.steps if s.on_failure is not None
        ]:
            if policy not in ON_FAILURE:
                raise SagaDefinitionError(
                    f"saga {self.name!r}, {where}: on_failure {policy!r}: one of "
                    + ", ".join(ON_FAILURE)
                )
        if self.exclusive_timeout is not None and self.exclusive_timeout <= timedelta(0):
            raise SagaDefinitionError(f"saga {self.name!r}: exclusive_timeout must be positive")
        object.__setattr__(self, "position", {s.name: i for i, s in enumerate(self.steps)})
        try:
            object.__setattr__(self, "graph", resolve_graph(self.steps))
        except GraphError as err:
            raise SagaDefinitionError(f"saga {self.name!r}, {err}") from None

    graph: Graph = field(init=False, repr=False, compare=False)
    """Resolved dependencies (set when the definition is checked)."""
    position: Mapping[str, int] = field(init=False, repr=False, compare=False)
    """Each step's index in ``steps``, by name."""

    def check_items(self, data: InputT) -> None:
        """Check the items of every fan-out whose list the input alone gives (before a start).

        A fan-out whose ``items`` builder needs earlier steps' outputs is checked when it runs.

        Raises:
            SagaInputError: a fan-out's item keys are invalid or repeated.
        """
        for step in self.steps:
            if not isinstance(step.action, ForEach):
                continue
            ctx = StepContext(saga_id="", input=data, outputs={})
            try:
                items = list(step.action.items(ctx))
            except Exception:
                continue
            step.action.item_keys(self.name, items)

    def step_policy(self, step: Step) -> OnFailure:
        """What ``step`` does when it fails for good (its own ``on_failure``, else the saga's)."""
        return step.on_failure or self.on_failure

    def step_retry(self, step: Step) -> RetryPolicy:
        """Return the forward retry policy of ``step``, with its non-retryable error types."""
        policy = step.retry or self.defaults.retry
        if step.non_retryable_errors:
            extra = [*(policy.non_retryable_error_types or ()), *step.non_retryable_errors]
            policy = replace(policy, non_retryable_error_types=extra)
        return policy

    def exclusive_keys(self, data: InputT) -> list[str]:
        """The saga's exclusive keys for input ``data``: distinct, in the order they are taken.

        Raises:
            SagaInputError: the key function raised, or returned no key or a key that is not
                a string of 1 to 200 printable characters (the problem names ``exclusive``).
        """
        if self.exclusive is None:
            return []
        try:
            found = self.exclusive(data)
        except Exception as err:  # a user's function: say what it raised, for the input given
            raise SagaInputError(
                self.name, [("exclusive", f"the key function raised {type(err).__name__}: {err}")]
            ) from None
        keys = [found] if isinstance(found, str) else found
        if not isinstance(keys, Sequence) or not keys:
            raise SagaInputError(self.name, [("exclusive", "the key function returned no key")])
        for key in keys:
            if not isinstance(key, str) or not 0 < len(key) <= 200 or not key.isprintable():
                raise SagaInputError(self.name, [(
                    "exclusive", f"key {key!r}: must be a string of 1 to 200 printable characters"
                )])  # fmt: skip
        return sorted(set(keys))

    def parse_input(self, raw: Any) -> InputT:
        """Validate ``raw`` (a model instance, a dict or a JSON string) against the input model.

        Raises:
            SagaInputError: naming each field that failed validation.
        """
        try:
            if isinstance(raw, str | bytes):
                return self.input.model_validate_json(raw)
            if isinstance(raw, BaseModel) and not isinstance(raw, self.input):
                raw = raw.model_dump(mode="json")
            return self.input.model_validate(raw)
        except ValidationError as err:
            problems = [
                (".".join(str(p) for p in e["loc"]) or "<input>", e["msg"]) for e in err.errors()
            ]
            raise SagaInputError(self.name, problems) from None
