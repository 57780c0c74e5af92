"""``saga dead-letters`` and ``saga events``: the broker's side of sagas."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from sagaloom._cli._common import CliError, add_command, workflow_id
from sagaloom._config._settings import setting

__all__ = ["register"]


async def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List the dead letters, or publish one again where it was first sent."""
    from sagaloom.client._broker_admin import dead_letters, redeliver

    try:
        if args.redeliver is not None:
            subject = await redeliver(args.nats, args.redeliver, namespace=args.nats_namespace)
            print(f"dead letter {args.redeliver} published again to {subject}")
            return 0
        letters = await dead_letters(
            args.nats,
            args.limit,
            kind=args.kind,
            subject=args.subject,
            oldest_first=args.oldest_first,
            namespace=args.nats_namespace,
        )
    except LookupError as err:  # no such letter, or it does not say where it came from
        raise CliError(str(err)) from None
    for letter in letters:
        if args.json:
            body = letter.data.decode(errors="replace")
            print(
                json.dumps(
                    {
                        "seq": letter.seq,
                        "kind": letter.kind,
                        "subject": letter.subject,
                        "reason": letter.reason,
                        "time": letter.time,
                        "data": body,
                    }
                )
            )
        else:
            preview = letter.data[:80].decode(errors="replace").replace("\n", " ")
            print(
                f"{letter.seq:>6}  {letter.kind:<8} {letter.subject:<24} {letter.reason}  {preview}"
            )
    print(f"({len(letters)} dead letter(s))", file=sys.stderr)
    return 0


async def cmd_events(args: argparse.Namespace) -> int:
    """A saga run's lifecycle events (CloudEvents), as the broker stored them."""
    from sagaloom.client._broker_admin import saga_events

    workflow_id(args.id, "id")
    events = await saga_events(args.nats, args.id, namespace=args.nats_namespace)
    for event in events:
        if args.json:
            print(event.model_dump_json())
            continue
        data = event.data
        what = " ".join(
            f"{k}={data[k]}" for k in ("step", "attempt", "status", "error") if k in data
        )
        print(f"{event.time}  {event.type.removeprefix('io.sagaloom.'):<24} {what}".rstrip())
    print(f"({len(events)} event(s) for {args.id})", file=sys.stderr)
    return 0


def _broker_flags(parser: argparse.ArgumentParser) -> None:
    url, namespace = setting("nats_url"), setting("nats_namespace")
    parser.add_argument(
        "--nats",
        metavar="URL",
        default=url.read(os.environ) or "nats://127.0.0.1:4222",
        help=f"the broker ({url.env}, else nats://127.0.0.1:4222)",
    )
    parser.add_argument(
        "--nats-namespace",
        metavar="NAME",
        default=namespace.read(os.environ),
        help=f"{namespace.help} ({namespace.env})",
    )


def register(sub: Any) -> None:
    """Add this group's commands."""
    p = add_command(
        sub,
        "dead-letters",
        cmd_dead_letters,
        "list the broker's dead letters (or re-deliver one after a fix)",
        "saga dead-letters --kind reply --limit 20   (then: saga dead-letters --redeliver 42)",
    )
    _broker_flags(p)
    p.add_argument("--limit", type=int, default=100, help="at most this many (newest first)")
    p.add_argument("--kind", choices=["reply", "trigger"], help="only this kind of letter")
    p.add_argument(
        "--subject", metavar="SUBJECT", help="only those first sent here (a.*.c, a.> match)"
    )
    p.add_argument("--oldest-first", action="store_true", help="walk from the oldest")
    p.add_argument("--redeliver", type=int, metavar="SEQ", help="publish it again, then drop it")
    p.add_argument("--json", action="store_true", help="as JSON")

    p = add_command(
        sub,
        "events",
        cmd_events,
        "a saga run's lifecycle events, from the broker",
        "saga events FulfilmentSaga-f-1 --json",
    )
    p.add_argument("id", help="workflow id")
    _broker_flags(p)
    p.add_argument("--json", action="store_true", help="one CloudEvent per line")
