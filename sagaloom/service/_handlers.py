"""What the HTTP endpoints and the broker consumer share: a handler's shape and its answer."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from sagaloom._wire._names import step_of_key
from sagaloom.service._inbox import Answer, forward_key

__all__ = ["BadCommand", "CommandInfo", "Shape", "answer_of"]


@dataclass(frozen=True)
class CommandInfo:
    """What the engine sent besides the body: give a handler a parameter of this type."""

    key: str
    """The ``Idempotency-Key``: ``<workflow id>:<step>`` (``…:compensate`` for an undo)."""
    correlation_id: str
    """``Sagaloom-Correlation-Id``: what an asynchronous reply names."""
    reply_token: str | None
    """``Sagaloom-Reply-Token``: what an asynchronous reply carries (None: not sent)."""
    reply_to: str | None = None
    """``Sagaloom-Reply-To``: the broker subject of the reply (commands over NATS)."""

    @property
    def step(self) -> str:
        """The saga step that sent it (the key's last part, before ``:compensate``).

        A step redriven under a new key (``<step>~r<n>``, after a refusal) is the same step.
        """
        return step_of_key((forward_key(self.key) or self.key).rsplit(":", 1)[-1])


class BadCommand(Exception):
    """A command refused before its handler: a 4xx status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Shape:
    """How to call a handler: which parameter gets what."""

    body: tuple[str, TypeAdapter[Any]] | None
    session: str | None
    done: str | None
    command: str | None

    @classmethod
    def of(cls, handler: Callable[..., Any]) -> Shape:
        hints = get_type_hints(handler)
        hints.pop("return", None)
        body = session = done = command = None
        for name in inspect.signature(handler).parameters:
            kind = hints.get(name, Any)
            if kind is AsyncSession:
                session = name
            elif kind is Answer:
                done = name
            elif kind is CommandInfo:
                command = name
            elif body is None:
                body = (name, TypeAdapter(kind))
            else:
                raise TypeError(f"{handler.__name__}: parameter {name!r} has no role")
        return cls(body, session, done, command)

    def parse(self, raw: bytes, max_depth: int) -> Any:
        """The body, validated for the handler.

        Raises:
            BadCommand: 400 (not JSON, too deep) or 422 (naming the field), one line.
        """
        if self.body is None:
            return None
        try:
            data = json.loads(raw or b"null")
        except (ValueError, RecursionError):
            raise BadCommand(400, "body is not JSON") from None
        if _depth(data, max_depth) > max_depth:
            raise BadCommand(400, f"body nested deeper than {max_depth}")
        try:
            return self.body[1].validate_python(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            reason = f"body.{where}: {first['msg']}".replace("body.body", "body")
            raise BadCommand(422, reason) from None

    def call(
        self,
        handler: Callable[..., Awaitable[Any]],
        body: Any,
        tx: AsyncSession,
        command: CommandInfo,
        done: Answer | None = None,
    ) -> Awaitable[Answer]:
        """Call ``handler`` with what it asks for; its result as an :class:`Answer`."""
        args: dict[str, Any] = {}
        if self.body is not None:
            args[self.body[0]] = body
        if self.session is not None:
            args[self.session] = tx
        if self.done is not None:
            args[self.done] = done
        if self.command is not None:
            args[self.command] = command
        return answer_of(handler(**args))


async def answer_of(result: Awaitable[Any]) -> Answer:
    """The handler's result as an answer: an Answer as is, anything else as JSON 200."""
    value = await result
    if isinstance(value, Answer):
        return value
    if isinstance(value, BaseModel):
        return Answer.json(value.model_dump(mode="json"))
    return Answer.json(value)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, counting no further than ``limit + 1``."""
    if limit < 0 or not isinstance(value, dict | list):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(v, limit - 1) for v in items), default=0)
