"""Names that recorded histories and the Temporal namespace hold: keep them byte for byte.

Workflow histories record activity names, signal, query and update names and memo keys;
visibility holds the search attributes. Changing any of them breaks running sagas' replay or
the Web UI's filters, so they live here, apart from the code that uses them.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

__all__ = [
    "ASK_SUFFIX",
    "BREAKER_MEMO",
    "CHILD_DONE_SIGNAL",
    "COMMAND_ACTIVITY",
    "COMMAND_ASK_ACTIVITY",
    "COMPENSATE_SUFFIX",
    "DEFAULT_TASK_QUEUE",
    "END_NOTICE_PATH",
    "END_NOTICE_SUFFIX",
    "END_NOTICE_WORKFLOW",
    "EVENTS_ACTIVITY",
    "GENERATION_MARK",
    "HELD_MEMO",
    "HOLD_PREFIX",
    "HTTP_ACTIVITY",
    "ITEMS_STOP_SIGNAL",
    "ITEMS_WORKFLOW",
    "KEY_ACQUIRE_MANY_UPDATE",
    "KEY_ACQUIRE_UPDATE",
    "KEY_ASK_ACTIVITY",
    "KEY_CLOSED_ACTIVITY",
    "KEY_EARLY_MEMO",
    "KEY_GRANTED_SIGNAL",
    "KEY_QUEUE",
    "KEY_RELEASE_ACTIVITY",
    "KEY_RELEASE_KEYS_SIGNAL",
    "KEY_SHARD_PREFIX",
    "KEY_SHARD_WORKFLOW",
    "KEY_STATE_QUERY",
    "MALFORMED_RESPONSE",
    "PARENT_SIGNAL",
    "PARTICIPANT_REJECTED",
    "PARTICIPANT_UNAVAILABLE",
    "PAYLOADS_MEMO",
    "REPLY_UPDATE",
    "RESOLVE_UPDATE",
    "SAGALOOM_VERSION",
    "SAGA_KEY",
    "SAGA_NAME",
    "SAGA_STATUS",
    "SAGA_STEP",
    "SEARCH_ATTRIBUTES",
    "STATE_QUERY",
    "TOOK_EFFECT",
    "UNEXPECTED_STATUS",
    "WAIT_UPDATE",
    "ask_activity_id",
    "compensation_activity_id",
    "hold_service",
    "items_batch_id",
    "key_step",
    "reply_activity_id",
    "saga_of",
    "step_key",
    "step_of_key",
]

DEFAULT_TASK_QUEUE = "sagaloom"
"""The task queue sagas run on when none is named (worker, client and CLI agree on it)."""

HTTP_ACTIVITY = "sagaloom.http"
"""Registered name of the engine's HTTP participant activity."""
COMMAND_ACTIVITY = "sagaloom.nats.command"
"""Registered name of the activity that publishes a broker command."""
COMMAND_ASK_ACTIVITY = "sagaloom.nats.ask"
"""Registered name of the activity that publishes a broker command and ends with its reply: the
reply completes it by its activity id (asynchronous completion), see :func:`reply_activity_id`."""
EVENTS_ACTIVITY = "sagaloom.nats.events"
"""Registered name of the (local) activity that publishes lifecycle events."""
HELD_MEMO = "sagaloom.held"
PAYLOADS_MEMO = "sagaloom.payloads"
"""Memo of a saga started by a client with a payload store: its outputs are not capped by
history's limits (large ones are stored), and its children and fan-out batches inherit it."""
BREAKER_MEMO = "sagaloom.breaker"
"""Memo of a service's breaker: ``open`` or ``closed``, read without a worker (``describe``)."""
"""Memo set on a child saga started by a parent saga: it stays open for the parent's decision."""
PARENT_SIGNAL = "parent_saga_decision"
"""Signal a parent saga sends its held child: ``release`` or ``compensate``."""
CHILD_DONE_SIGNAL = "child_saga_steps_done"
"""Signal a child saga sends its parent when its steps are done (it then waits, held open)."""
WAIT_UPDATE = "wait_for_step"
"""Update an answer-early start waits on: a step's output, or the saga's end if it comes first."""
REPLY_UPDATE = "participant_reply"
"""Update carrying an asynchronous participant's reply; its validator refuses what the saga
does not wait for, so a refused reply never enters history."""
END_NOTICE_WORKFLOW = "SagaloomEndNotice"
"""Workflow type of the notice a saga that ended sends its participants."""
END_NOTICE_PATH = "/sagaloom/saga-ended"
"""Where a participant hears that a saga ended (``POST``; ``{"saga_id", "status"}``)."""
END_NOTICE_SUFFIX = "sagaloom-ended"
"""The notice workflow's id is ``<saga id>:sagaloom-ended``."""
KEY_ACQUIRE_UPDATE = "acquire"
"""Update asking a key's lock for the key (granted now, or queued)."""
KEY_ACQUIRE_MANY_UPDATE = "acquire-many"
"""A key shard's Update taking several sagas' requests at once (a worker's asks, batched)."""
KEY_STATE_QUERY = "state"
"""Query of a key's lock: its holder and waiters."""
KEY_GRANTED_SIGNAL = "sagaloom.key-granted"
"""Signal from a key's lock to a waiting saga: the key (its name) is now the saga's."""
KEY_EARLY_MEMO = "sagaloom-keys"
"""Memo of a saga whose keys ``start_saga`` took before starting it (``EarlyKeys``)."""
KEY_SHARD_WORKFLOW = "SagaloomKeyShard"
"""Workflow type of a key shard (``sagaloom-keys:<nn>``: the keys that hash to it)."""
KEY_SHARD_PREFIX = "sagaloom-keys:"
"""A key shard's workflow id is this prefix and its two-digit number."""
ITEMS_WORKFLOW = "sagaloom.Items"
"""Workflow type of a batch of a ``ForEach`` step's items (a child of its saga)."""
ITEMS_STOP_SIGNAL = "stop"
"""Signal to an item batch: start no more items, cancel the running ones, report."""


def items_batch_id(workflow_id: str, step: str, batch: int) -> str:
    """Workflow id of batch ``batch`` of a fan-out step: ``<saga id>:<step>:items-<n>``.

    The batch that undoes those items runs under the same id once the first closed, so an
    item's idempotency key (``<batch id>:<item key>``, ``:compensate`` for its undo) is the
    same forward and back, and across retries, restarts and replays.
    """
    return f"{workflow_id}:{step}:items-{batch}"


KEY_QUEUE = "sagaloom-keys"
"""The task queue key shards run on (every sagaloom worker serves it beside its own)."""
KEY_RELEASE_KEYS_SIGNAL = "release-keys"
"""Signal to a key shard: a saga is done with some of its keys (``KeyRelease``)."""
KEY_ASK_ACTIVITY = "sagaloom.key.ask"
"""Local activity a saga asks a key's shard through (Update-with-Start)."""
KEY_RELEASE_ACTIVITY = "sagaloom.key.release"
"""Local activity a saga tells its keys' shards that it is done with them through."""
KEY_CLOSED_ACTIVITY = "sagaloom.key.closed-holders"
"""Activity a key shard finds which of its holders' runs closed with."""
RESOLVE_UPDATE = "resolve"
"""Update carrying an operator's decision for a parked saga."""
MALFORMED_RESPONSE = "MalformedResponse"
"""Error type of a 2xx answer whose body cannot be read: non-retryable, yet the call took effect,
so the step is compensated (never counted as a refusal)."""
UNEXPECTED_STATUS = "UnexpectedStatus"
"""Error type of an answer that is neither 2xx, 4xx nor 5xx (a 3xx: redirects are not followed;
a 1xx): the call may have taken effect, so the step is compensated (never a refusal)."""
PARTICIPANT_UNAVAILABLE = "ParticipantUnavailable"
"""Retryable: the participant could not be reached, timed out, or answered 5xx/408/425/429."""
PARTICIPANT_REJECTED = "ParticipantRejected"
"""Non-retryable: the participant refused the request (4xx other than 408/425/429)."""
TOOK_EFFECT = frozenset({MALFORMED_RESPONSE, UNEXPECTED_STATUS})
"""Non-retryable error types that still mean the call took effect."""
STATE_QUERY = "saga_state"
"""Query returning a saga's live state."""

SAGA_NAME = SearchAttributeKey.for_keyword("SagaName")
"""Search attribute: the saga's name."""
SAGA_STATUS = SearchAttributeKey.for_keyword("SagaStatus")
"""Search attribute: the saga's status."""
SAGA_STEP = SearchAttributeKey.for_keyword("SagaStep")
"""Search attribute: the step running or compensating now (the failed step once compensated)."""
SAGA_KEY = SearchAttributeKey.for_keyword("SagaKey")
"""Search attribute: the business key (for example the order id)."""
SAGALOOM_VERSION = SearchAttributeKey.for_keyword("SagaloomVersion")
"""Search attribute: the sagaloom release whose worker started the run (``saga upgrade-check``
counts the running sagas by it; runs of development builds before 0.1.0 have none)."""
SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str], ...] = (
    SAGA_NAME,
    SAGA_STATUS,
    SAGA_STEP,
    SAGA_KEY,
    SAGALOOM_VERSION,
)
"""Custom search attributes the runtime writes; register them on the namespace (Keyword)."""


COMPENSATE_SUFFIX = "compensate"
"""Last part of a compensation's activity id and correlation id (``<step>:compensate``)."""
ASK_SUFFIX = "ask"
"""Last part of a command's ask activity id (``<step>[:compensate]:ask``)."""


def compensation_activity_id(step: str) -> str:
    """Activity id of a step's compensation (the forward action's activity id is the step name)."""
    return f"{step}:{COMPENSATE_SUFFIX}"


def step_key(workflow_id: str, step: str, *, undo: bool = False) -> str:
    """A step's key: ``<workflow id>:<step>`` (``…:<step>:compensate`` for its compensation).

    The one wire contract built from a saga's ids: the participant's ``Idempotency-Key``, the
    reply's correlation id (``Sagaloom-Correlation-Id``) and a child saga's workflow id. Stable
    across retries, worker restarts and resets; :func:`saga_of` reads it back.
    """
    return f"{workflow_id}:{compensation_activity_id(step) if undo else step}"


GENERATION_MARK = "~r"
"""Between a step's name and its key generation: ``charge-payment~r1`` after a redrive of a
refused step (a new idempotency key; nothing took effect under the old one)."""
HOLD_PREFIX = "hold."
"""The breaker of an operator's hold before a step is that of service ``hold.<saga>.<step>``."""


def key_step(step: str, generation: int) -> str:
    """The name a step's calls carry in their keys and activity ids at ``generation``.

    Generation 0 is the step's name, as always; n is ``<step>~r<n>``.
    """
    return step if generation == 0 else f"{step}{GENERATION_MARK}{generation}"


def step_of_key(name: str) -> str:
    """The step a key's step part names (its key generation removed)."""
    base, mark, number = name.rpartition(GENERATION_MARK)
    return base if mark and number.isdigit() else name


def hold_service(saga: str, step: str) -> str:
    """The service name of an operator's hold before ``step`` of ``saga`` (its breaker's)."""
    return f"{HOLD_PREFIX}{saga}.{step}"


def saga_of(key: str) -> str:
    """The workflow id in a step key (``<workflow id>:<step>[:compensate]``)."""
    return key.removesuffix(":" + COMPENSATE_SUFFIX).rsplit(":", 1)[0]


def ask_activity_id(activity_id: str) -> str:
    """The ask's activity id of a step (or compensation) whose own id is ``activity_id``.

    Apart from every other activity id, so that a reply completes an ask and nothing else (an
    HTTP call awaiting its reply is never completed by it).
    """
    return f"{activity_id}:{ASK_SUFFIX}"


def reply_activity_id(key: str) -> str:
    """The ask's activity id of the command sent under step key ``key``."""
    return ask_activity_id(key[len(saga_of(key)) + 1 :])
