"""Contracts, contract-first: what a participant team codes against, generated from the sagas.

For every saga: a contract document (JSON Schema of its input, each step's participant, request
builder, output and replies, its compensation) and a Mermaid diagram of its step graph with the
compensations; for all of them together, an AsyncAPI 3 document of the broker channels
(commands, replies, lifecycle events, dead letters, triggers). ``saga contract`` writes them;
the committed ones under ``docs/contracts/`` are checked for drift by the test suite.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sagaloom._drawing import drawing_of, to_mermaid, to_svg
from sagaloom._saga._definition import (
    Action,
    Activity,
    ChildSaga,
    Command,
    ForEach,
    Http,
    Saga,
    Timer,
)
from sagaloom._saga._model import EVENT_TYPES, SagaEvent
from sagaloom._wire._protocol import (
    COMMANDS_STREAM,
    DEAD_PREFIX,
    DEAD_REASON,
    DEAD_STREAM,
    DEAD_SUBJECT,
    EVENTS_PREFIX,
    EVENTS_STREAM,
    IDEMPOTENCY_HEADER,
    MSG_ID,
    REPLIES_STREAM,
    REPLY_SUBJECT,
    REPLY_TO_HEADER,
    TRIGGERS_STREAM,
    command_subject,
)
from sagaloom._wire._reply_auth import CORRELATION_HEADER, TOKEN_HEADER
from sagaloom.client._intake import ReplyRequest

__all__ = ["asyncapi", "contract", "mermaid", "write_contracts"]


_COMMAND_HEADERS = (MSG_ID, IDEMPOTENCY_HEADER, CORRELATION_HEADER, TOKEN_HEADER, REPLY_TO_HEADER)


def _builder(fn: Any) -> str | None:
    if fn is None:
        return None
    name = getattr(fn, "__qualname__", repr(fn))
    return f"{getattr(fn, '__module__', '?')}.{name}"


def _action(action: Action | None) -> dict[str, Any] | None:
    """What one action asks of whom, as far as the definition says."""
    if action is None:
        return None
    if isinstance(action, Http):
        path = action.path if isinstance(action.path, str) else _builder(action.path)
        return {
            "type": "http",
            "service": action.service,
            "method": action.method,
            "path": path,
            "request_body_builder": _builder(action.body),
            "headers": [IDEMPOTENCY_HEADER, CORRELATION_HEADER, TOKEN_HEADER],
        }
    if isinstance(action, Command):
        return {
            "type": "command",
            "subject": command_subject(action.subject),
            "stream": COMMANDS_STREAM,
            "request_body_builder": _builder(action.body),
            "headers": [
                MSG_ID,
                IDEMPOTENCY_HEADER,
                CORRELATION_HEADER,
                TOKEN_HEADER,
                REPLY_TO_HEADER,
            ],
            "reply": {"subject": REPLY_SUBJECT, "schema": "#/$defs/Reply"},
        }
    if isinstance(action, Activity):
        activity = action.activity
        name = (
            activity
            if isinstance(activity, str)
            else getattr(activity, "__temporal_activity_definition", None)
        )
        return {
            "type": "activity",
            "activity": getattr(name, "name", None) or _builder(activity),
            "argument_builder": _builder(action.arg),
        }
    if isinstance(action, Timer):
        return {"type": "timer"}
    if isinstance(action, ForEach):
        return {
            "type": "for_each",
            "items_builder": _builder(action.items),
            "item_key": _builder(action.key),
            "do": _action(action.do),
            "item_compensation": _action(action.compensation),
            "max_concurrency": action.max_concurrency,
            "tolerate": action.tolerate,
        }
    assert isinstance(action, ChildSaga)
    return {"type": "child_saga", "saga": action.saga.name}


def contract(saga: Saga[Any]) -> dict[str, Any]:
    """The saga's contract document (JSON-able)."""
    steps = []
    for step in saga.steps:
        asynchronous = step.reply_timeout is not None or isinstance(step.action, Command)
        steps.append(
            {
                "name": step.name,
                "kind": step.kind,
                "after": list(saga.graph.depends_on[step.name]),
                "action": _action(step.action),
                "output": step.output.model_json_schema() if step.output else None,
                "reply": "#/$defs/Reply" if asynchronous else None,
                "compensation": _action(step.compensation),
            }
        )
    return {
        "saga": saga.name,
        "description": saga.description,
        "events": saga.events,
        "input": saga.input.model_json_schema(),
        "steps": steps,
        "$defs": {"Reply": ReplyRequest.model_json_schema()},
    }


def mermaid(saga: Saga[Any]) -> str:
    """A Mermaid flowchart of the saga: steps by dependency, each with its compensation."""
    return to_mermaid(drawing_of(saga))


def asyncapi(sagas: Iterable[Saga[Any]]) -> dict[str, Any]:
    """An AsyncAPI 3.0 document of the broker channels the sagas use."""
    sagas = list(sagas)
    channels: dict[str, Any] = {
        "replies": {
            "address": REPLY_SUBJECT,
            "description": f"Participants' replies (stream {REPLIES_STREAM}); send "
            f"{MSG_ID} derived from the command's {MSG_ID} (e.g. reply-<command's id>): a "
            "retried reply is stored once, the reply to a later send of the command is new.",
            "messages": {"Reply": {"$ref": "#/components/messages/Reply"}},
        },
        "lifecycleEvents": {
            "address": EVENTS_PREFIX + ".{saga}.{workflowId}",
            "description": f"Each saga's life as CloudEvents (stream {EVENTS_STREAM}); "
            "the workflow id's characters outside [A-Za-z0-9_-] become '_'.",
            "parameters": {"saga": {}, "workflowId": {}},
            "messages": {"SagaEvent": {"$ref": "#/components/messages/SagaEvent"}},
        },
        "deadLetters": {
            "address": DEAD_PREFIX + ".{kind}",
            "description": f"What could not be processed (stream {DEAD_STREAM}), with "
            f"{DEAD_REASON} and {DEAD_SUBJECT}; `saga dead-letters` lists and re-delivers.",
            "parameters": {"kind": {"enum": ["reply", "trigger"]}},
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        },
    }
    operations: dict[str, Any] = {
        "receiveReplies": {"action": "receive", "channel": {"$ref": "#/channels/replies"}},
        "sendLifecycleEvents": {
            "action": "send",
            "channel": {"$ref": "#/channels/lifecycleEvents"},
        },
        "sendDeadLetters": {"action": "send", "channel": {"$ref": "#/channels/deadLetters"}},
    }
    messages: dict[str, Any] = {
        "Reply": {"payload": ReplyRequest.model_json_schema()},
        "SagaEvent": {
            "contentType": "application/cloudevents+json",
            "payload": {
                **SagaEvent.model_json_schema(),
                "properties": {
                    **SagaEvent.model_json_schema()["properties"],
                    "type": {"enum": list(EVENT_TYPES)},
                },
            },
        },
        "DeadLetter": {
            "headers": {
                "type": "object",
                "properties": {DEAD_REASON: {"type": "string"}, DEAD_SUBJECT: {"type": "string"}},
            },
            "payload": {"description": "the original message, unchanged"},
        },
    }
    command_headers = {
        "type": "object",
        "required": list(_COMMAND_HEADERS),
        "properties": {
            MSG_ID: {"type": "string", "description": "<correlation id>#<send number>"},
            IDEMPOTENCY_HEADER: {
                "type": "string",
                "description": "<workflow id>:<step>[:compensate]",
            },
            CORRELATION_HEADER: {"type": "string", "description": "echo it in the reply"},
            TOKEN_HEADER: {"type": "string", "description": "echo it in the reply"},
            REPLY_TO_HEADER: {"type": "string", "const": REPLY_SUBJECT},
        },
    }
    for saga in sagas:
        for step in saga.steps:
            for part, action in (("", step.action), ("Undo", step.compensation)):
                if not isinstance(action, Command):
                    continue
                key = f"{saga.name}.{step.name}{part}".replace("-", "_").replace(".", "_")
                channels[key] = {
                    "address": command_subject(action.subject),
                    "description": f"{saga.name}, step {step.name}"
                    + (" (compensation)" if part else "")
                    + f"; stream {COMMANDS_STREAM}; reply on {REPLY_SUBJECT}",
                    "messages": {"Command": {"$ref": f"#/components/messages/{key}"}},
                }
                messages[key] = {
                    "headers": command_headers,
                    "payload": {
                        "description": f"JSON built by {_builder(action.body)}"
                        if action.body
                        else "null"
                    },
                }
                operations[f"send_{key}"] = {
                    "action": "send",
                    "channel": {"$ref": f"#/channels/{key}"},
                    "reply": {"channel": {"$ref": "#/channels/replies"}},
                }
        trigger = f"trigger_{saga.name}"
        channels[trigger] = {
            "address": "{subject}",
            "description": f"Events that start {saga.name} (`saga worker --trigger "
            f"SUBJECT={saga.name}`; stream {TRIGGERS_STREAM}): its input, or a CloudEvent "
            "whose data is its input; the workflow id comes from the event id.",
            "parameters": {"subject": {}},
            "messages": {"Trigger": {"$ref": f"#/components/messages/{trigger}"}},
        }
        messages[trigger] = {"payload": saga.input.model_json_schema()}
        operations[f"receive_{trigger}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{trigger}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "sagaloom broker channels",
            "version": "1.0.0",
            "description": "Commands, replies, lifecycle events, dead letters and triggers of "
            + ", ".join(s.name for s in sagas),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def write_contracts(sagas: Iterable[Saga[Any]], folder: Path) -> list[Path]:
    """Write every saga's contract and drawing (Mermaid and SVG), and the AsyncAPI document."""
    sagas = sorted(sagas, key=lambda s: s.name)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for saga in sagas:
        path = folder / f"{saga.name}.contract.json"
        path.write_text(json.dumps(contract(saga), indent=2, sort_keys=True) + "\n")
        diagram = folder / f"{saga.name}.mmd"
        diagram.write_text(mermaid(saga))
        drawing = folder / f"{saga.name}.svg"
        drawing.write_text(to_svg(drawing_of(saga)))
        written += [path, diagram, drawing]
    api = folder / "asyncapi.json"
    api.write_text(json.dumps(asyncapi(sagas), indent=2, sort_keys=True) + "\n")
    return [*written, api]
