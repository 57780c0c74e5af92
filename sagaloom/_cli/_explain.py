"""One error mapper for every ``saga`` command: an expected failure is one line, exit code 2."""

from __future__ import annotations

import argparse
import os

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from sagaloom._cli._common import CliError
from sagaloom._config._settings import ConfigError
from sagaloom._encoding._codec import EncryptionKeyError
from sagaloom._saga._definition import SagaInputError
from sagaloom.client._runs import SagaAlreadyRan
from sagaloom.worker._registry import UnknownSagaError

__all__ = ["explain"]

_SAID_AS_IS = (
    CliError,
    ConfigError,
    EncryptionKeyError,
    SagaAlreadyRan,
    SagaInputError,
    UnknownSagaError,
)


def _subject(args: argparse.Namespace) -> str:
    """What a server-side refusal is about: the saga, the deployment, or the server."""
    if getattr(args, "build_id", None) and getattr(args, "command", "") == "set-current":
        return f"deployment {args.deployment!r} build {args.build_id!r}"
    if getattr(args, "id", None):
        return f"saga {args.id!r}"
    return f"Temporal at {getattr(args, 'address', '?')}"


def explain(err: BaseException, args: argparse.Namespace) -> str | None:
    """The one line to print for an expected failure of a command; None for a bug.

    A user's mistake (bad flag, input, key, module) is said as raised; a refusal by Temporal
    names the saga (or deployment) it was about; an unreachable broker names its URL.
    """
    if isinstance(err, _SAID_AS_IS):
        return str(err)
    if isinstance(err, WorkflowAlreadyStartedError):
        return f"saga {err.workflow_id} is running already: saga show {err.workflow_id}"
    if isinstance(err, WorkflowUpdateFailedError):
        cause = err.cause
        return f"{_subject(args)}: {getattr(cause, 'message', cause)}"
    if isinstance(err, RPCError):
        return f"{_subject(args)}: {err.message}"
    if isinstance(err, ModuleNotFoundError):
        return (
            f"cannot import {err.name!r} (looked in the current folder {os.getcwd()} and on "
            f"PYTHONPATH): {err}"
        )
    if isinstance(err, OSError) and getattr(args, "nats", None):
        return f"NATS at {args.nats}: {err}"
    return None
