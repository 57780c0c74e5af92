"""Mutation testing by hand: break one documented promise at a time, run the tests that guard it.

``./run mutate`` (``python -m tests.mutations``) applies each mutation below to a copy of the
source on disk (one small textual change in the runtime, the HTTP participant, the endpoint or
the demo participants), runs only the tests that bear on it, restores the file, and prints
whether the suite caught it and with which test first. It is run by hand, not in CI (a full run
takes minutes); ``tests/house/test_mutations.py`` checks in CI that every mutation still applies to
today's code, so the list cannot rot silently.

Why not mutmut or cosmic-ray: they generate thousands of operator swaps and run a chosen test
command per mutant; with the integration suite (a dev server, worker processes and participant
services per run) that is hours. A curated list, each item named after the promise it breaks,
runs the few relevant tests in tens of seconds per mutant.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    """One small change that breaks one promise."""

    promise: str
    """The documented promise it breaks."""
    path: str
    """File, from the repository root."""
    old: str
    """Text that must occur exactly once."""
    new: str
    """What it becomes."""
    tests: tuple[str, ...]
    """Pytest arguments selecting the tests that bear on it."""


R = "sagaloom/_runtime/"
MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "replies: a token with non-ASCII characters is refused (401), never a 500",
        "sagaloom/_wire/_reply_auth.py",
        "        return hmac.compare_digest(expected, given)",
        "        return hmac.compare_digest(self.token(correlation_id), token)",
        ("tests/broker/test_replies.py", "-k", "forged"),
    ),
    Mutation(
        "replies: Temporal too slow for the update is a 503 (retry), not a 500",
        "sagaloom/client/_intake.py",
        "    except RPCTimeoutOrCancelledError as err:",
        "    except ZeroDivisionError as err:",
        ("tests/broker/test_replies.py", "-k", "too_slow"),
    ),
    Mutation(
        "broker: an unanswered undo command is sent again until answered or the budget is spent",
        R + "_actions.py",
        "        if undo:\n            return await self._undo_command(command)",
        "        if False:\n            return await self._undo_command(command)",
        ("tests/broker/test_broker.py", "-k", "unanswered_undo"),
    ),
    Mutation(
        "broker: a reply's id follows its command's send, so a re-sent undo is answered at once",
        "sagaloom/service/_commands.py",
        '        reply_id = f"reply-{headers.get(MSG_ID) or key}"',
        '        reply_id = f"reply-{key}"',
        ("tests/broker/test_broker.py", "-k", "operators_retry"),
    ),
    Mutation(
        "broker: a command's reply completes its open ask (no update, no further workflow task)",
        "sagaloom/client/_intake.py",
        "        await ask.complete(reply)\n        return\n",
        "        raise RPCError('skipped', RPCStatusCode.NOT_FOUND, b'')\n",
        ("tests/broker/test_broker.py", "-k", "completes_each_command"),
    ),
    Mutation(
        "broker: a reply through the update ends the wait of an open ask",
        "sagaloom/_runtime/_actions.py",
        "lambda: ask.done() or self._replies.arrived(correlation)",
        "lambda: ask.done()",
        ("tests/broker/test_broker.py", "-k", "through_the_update_ends"),
    ),
    Mutation(
        "broker: a later attempt of an ask publishes its command again (a worker died before)",
        "sagaloom/_broker/_bus.py",
        "        elif datetime.now(UTC) - info.scheduled_time < RESEND_WITHIN:",
        "        elif False:",
        ("tests/broker/test_broker.py", "-k", "later_attempt"),
    ),
    Mutation(
        "rolling upgrade: a saga's commands are those its recorded history holds (replay)",
        R + "_workflow.py",
        "        if labels.get(SAGA_NAME) != saga.name or labels.get(SAGALOOM_VERSION) is None:",
        "        if False:",
        ("tests/release/test_replay.py", "-k", "nested_sagas_and_their_children"),
    ),
    Mutation(
        "broker: a saga read from its history counts a command's ask as its step",
        "sagaloom/client/_history.py",
        '    activity_id = activity_id.removesuffix(f":{ASK_SUFFIX}")',
        "",
        ("tests/broker/test_broker.py", "-k", "cancelled_while_its_ask"),
    ),
    Mutation(
        "inputs: the 2 MB limit counts UTF-8 bytes, not characters",
        "sagaloom/client/_runs.py",
        "    size = len(parsed.model_dump_json().encode())",
        "    size = len(parsed.model_dump_json())",
        ("tests/payloads/test_security.py", "-k", "two_megabytes"),
    ),
    Mutation(
        "participants: an absurd Retry-After (inf) is clamped, never a crash",
        "sagaloom/participants/_classify.py",
        "        return timedelta(seconds=min(max(0.0, seconds), MAX_RETRY_AFTER.total_seconds()))",
        "        return timedelta(seconds=max(0.0, seconds))",
        ("tests/toolkit/test_http_participant.py", "-k", "absurd"),
    ),
    Mutation(
        "rule 2: a 3xx (not followed) is an unknown outcome and is undone, never a refusal",
        "sagaloom/_wire/_names.py",
        "TOOK_EFFECT = frozenset({MALFORMED_RESPONSE, UNEXPECTED_STATUS})",
        "TOOK_EFFECT = frozenset({MALFORMED_RESPONSE})",
        ("tests/runtime/test_failure_semantics.py", "-k", "redirect"),
    ),
    Mutation(
        "triggers: an event without an id is refused, never a saga per send",
        "sagaloom/_broker/_consumers.py",
        "        if not event_id or not isinstance(event_id, str):",
        "        if False:",
        ("tests/broker/test_broker.py", "-k", "events_start"),
    ),
    Mutation(
        "broker: an outage logs one line per disconnect and reconnect, never a traceback",
        "sagaloom/_broker/_bus.py",
        "                    error_cb=self._on_error,\n",
        "",
        ("tests/broker/test_broker.py", "-k", "outage"),
    ),
    Mutation(
        "dead letters: listed newest first",
        "sagaloom/client/_broker_admin.py",
        "order = range(first, last + 1) if oldest_first else range(last, first - 1, -1)",
        "order = range(first, last + 1)",
        ("tests/broker/test_broker.py", "-k", "newest_first"),
    ),
    Mutation(
        "broker: two apps on one NATS server (two namespaces) share no subject",
        "sagaloom/_wire/_protocol.py",
        '        return f"{self.namespace}.replies"',
        '        return "sagaloom.replies"',
        ("tests/broker/test_broker.py", "-k", "two_apps"),
    ),
    Mutation(
        "broker: the reply and dead-letter streams are bounded, and a discard is logged",
        "sagaloom/_broker/_bus.py",
        "            max_msgs=limits.max_msgs if bound else None,",
        "            max_msgs=None,",
        ("tests/broker/test_broker.py", "-k", "bounded"),
    ),
    Mutation(
        "parking: a parked saga waits for an operator, never resumes on its own after hours",
        R + "_parking.py",
        "            await workflow.wait_condition(lambda: self._resolution is not None)\n",
        "            try:\n"
        "                await workflow.wait_condition(\n"
        "                    lambda: self._resolution is not None, timeout=3600\n"
        "                )\n"
        "            except TimeoutError:\n"
        "                self._resolution = Resolution(action='retry')\n",
        ("tests/runtime/test_deadline.py", "-k", "parked"),
    ),
    Mutation(
        "codec: every encryption draws a fresh AES-GCM nonce",
        "sagaloom/_encoding/_codec.py",
        "        nonce = os.urandom(12)",
        "        nonce = bytes(12)",
        ("tests/payloads/test_security.py", "-k", "nonce"),
    ),
    Mutation(
        "codec server: /encode needs the token too",
        "sagaloom/_ops/_codec_server.py",
        "        refused = self._refusal(request)",
        "        refused = None if encode else self._refusal(request)",
        ("tests/payloads/test_security.py", "-k", "codec_endpoint"),
    ),
    Mutation(
        "codec server: without a token it serves loopback Host names only (DNS rebinding)",
        "sagaloom/_ops/_codec_server.py",
        "            if host not in LOOPBACK_NAMES and not is_loopback(host):",
        "            if False:",
        ("tests/payloads/test_security.py", "-k", "half_sent"),
    ),
    Mutation(
        "participants: a configured token echoed raw in an error body is masked",
        "sagaloom/participants/_http_activity.py",
        "            failure = classify_response(response, what, info.attempt, secrets)",
        "            failure = classify_response(response, what, info.attempt)",
        ("tests/payloads/test_security.py", "-k", "echoed"),
    ),
    Mutation(
        "nesting: a held child asked to cancel before any decision compensates, never waits",
        "sagaloom/_runtime/_nesting.py",
        '    return "compensate" if cancel_requested else None',
        "    return None",
        ("tests/model/test_nesting_model.py",),
    ),
    Mutation(
        "nesting: a held child notices a cancel the SDK swallowed during its done signal",
        R + "_children.py",
        "lambda: held_child_choice(self._from_parent, cancel_requested()) is not None",
        "lambda: self._from_parent is not None",
        ("tests/runtime/test_nesting_cancel.py", "-k", "one_workflow_task"),
    ),
    Mutation(
        "nesting: a parent whose held child was cancelled meanwhile compensates, not completes",
        R + "_workflow.py",
        "        if gone:\n",
        "        if False:\n",
        ("tests/runtime/test_nesting_cancel.py", "-k", "operator"),
    ),
    Mutation(
        "rule 1: a step that took effect and then timed out is still undone",
        R + "_failures.py",
        "        return False  # it answered 2xx: it took effect, however unreadable the answer\n",
        "        return False  # it answered 2xx: it took effect, however unreadable the answer\n"
        "    if 'timed out' in describe(err):  # mutated: a timeout counted as a refusal\n"
        "        return True\n",
        ("tests/runtime/test_rule_edges.py", "-k", "budget"),
    ),
    Mutation(
        "rule 1: compensations run in reverse order of the steps that started",
        "sagaloom/_saga/_schedule.py",  # the property-tested function the runtime calls
        "    return list(reversed(list(started)))",
        "    return list(started)",
        ("tests/runtime/test_runtime_rules.py", "-k", "rejected_step"),
    ),
    Mutation(
        "rule 1: the compensation is registered before its step runs",
        R + "_step.py",
        "            progress.register(name)  # registered before the step runs",
        "            pass",
        ("tests/runtime/test_order_saga.py", "-k", "failure_at_step_k"),
    ),
    Mutation(
        "rule 2: a refused step is not undone",
        R + "_step.py",
        "                progress.refused(name)",
        "                pass",
        ("tests/runtime/test_runtime_rules.py", "-k", "rejected_step"),
    ),
    Mutation(
        "rule 2: a step that ran out of retries has an unknown outcome and is undone",
        R + "_failures.py",
        "        return err.retry_state == RetryState.NON_RETRYABLE_FAILURE",
        "        return err.retry_state in (RetryState.NON_RETRYABLE_FAILURE, "
        "RetryState.MAXIMUM_ATTEMPTS_REACHED)",
        ("tests/runtime/test_runtime_rules.py", "-k", "ran_out_of_retries"),
    ),
    Mutation(
        "rule 2: a 2xx took effect: an unreadable answer is compensated",
        "sagaloom/_wire/_names.py",
        "TOOK_EFFECT = frozenset({MALFORMED_RESPONSE, UNEXPECTED_STATUS})",
        "TOOK_EFFECT = frozenset({UNEXPECTED_STATUS})",
        ("tests/runtime/test_failure_semantics.py", "-k", "2xx"),
    ),
    Mutation(
        "rule 2: output= validates what a step returned; a mismatch fails and undoes it",
        R + "_step.py",
        "            if step.output is not None and not isinstance(step.action, ForEach):\n",
        "            if False:\n",
        ("tests/runtime/test_runtime_rules.py", "-k", "malformed_output"),
    ),
    Mutation(
        "rule 3: HTTP 425 is retryable",
        "sagaloom/participants/_classify.py",
        "_RETRYABLE_4XX = frozenset({408, 425, 429})",
        "_RETRYABLE_4XX = frozenset({408, 429})",
        ("tests/toolkit/test_http_participant.py",),
    ),
    Mutation(
        "rule 3: 5xx are retryable",
        "sagaloom/participants/_classify.py",
        "    if status >= 500 or status in _RETRYABLE_4XX:",
        "    if status in _RETRYABLE_4XX:",
        ("tests/toolkit/test_http_participant.py",),
    ),
    Mutation(
        "rule 3: Retry-After as an HTTP date becomes the retry delay",
        "sagaloom/participants/_classify.py",
        "        now = parsedate_to_datetime(sent) if sent else datetime.now(UTC)",
        "        now = parsedate_to_datetime(sent) if sent else when",
        ("tests/toolkit/test_http_participant.py",),
    ),
    Mutation(
        "rule 4: cancellation compensates the started steps",
        R + "_workflow.py",
        "        await shielded(self._compensate(data))\n        self._progress.set_status("
        "SagaStatus.CANCELED)",
        "        self._progress.set_status(SagaStatus.CANCELED)",
        ("tests/runtime/test_cancellation.py",),
    ),
    Mutation(
        "rule 4: compensations run where cancellation cannot reach",
        R + "_concurrent.py",
        "            return await asyncio.shield(task)",
        "            return await task",
        ("tests/runtime/test_rule_edges.py", "tests/runtime/test_cancellation.py", "-k", "cancel"),
    ),
    Mutation(
        "rule 5: a compensated saga is never Completed",
        R + "_workflow.py",
        "            raise self._compensated(why) from None",
        "            return progress.report()",
        ("tests/runtime/test_order_saga.py", "-k", "failure_at_step_k"),
    ),
    Mutation(
        "rule 6: a failing compensation parks the saga once its budget is used up",
        R + "_actions.py",
        "                defaults.compensation_budget,",
        "                None,",
        ("tests/runtime/test_failure_semantics.py", "-k", "undo"),
    ),
    Mutation(
        "rule 6: a decision naming the wrong step is refused",
        R + "_parking.py",
        "        if resolution.step is not None and resolution.step != parked:",
        "        if False:",
        ("tests/runtime/test_runtime_rules.py", "-k", "decision_for_the_wrong_step"),
    ),
    Mutation(
        "rule 6: mark-compensated records the step as undone by hand",
        R + "_step.py",
        '                done = decision.action == "mark_compensated"',
        "                done = False",
        ("tests/runtime/test_runtime_rules.py", "-k", "skips_or_marks"),
    ),
    Mutation(
        "rule 7: bad input fails the run at once, it never runs a step",
        "sagaloom/_saga/_definition.py",
        "            return self.input.model_validate(raw)",
        "            return self.input.model_construct(**raw)",
        ("tests/runtime/test_bad_input.py", "-k", "raw_sdk"),
    ),
    Mutation(
        "idempotency: every call carries <workflow id>:<step>, stable across retries",
        "sagaloom/participants/_idempotency.py",
        "    return step_key(workflow_id, activity_id)",
        '    return f"{workflow_id}:{activity_id}:{activity.info().attempt}"',
        ("tests/toolkit/test_http_participant.py", "-k", "idempotency_key"),
    ),
    Mutation(
        "idempotency: the participants replay a repeated key (the contract the chaos run needs)",
        "sagaloom/service/_inbox.py",
        "        return stored[1]\n",
        '        return Answer.json({"replayed": True}, stored[1].status)\n',
        ("tests/runtime/test_rule_edges.py", "-k", "replay"),
    ),
    Mutation(
        "parallel steps: reverse topological compensation waits for dependents' undos to finish",
        "sagaloom/_saga/_schedule.py",
        "        if all(later in undone for later in descendants[step] if later in started)",
        "        if all(later not in todo for later in descendants[step] if later in started)",
        ("tests/runtime/test_rule_edges.py", "-k", "dependency"),
    ),
    Mutation(
        "parallel steps: a step runs only after the steps it names",
        "sagaloom/_saga/_schedule.py",
        "    return [step for step in waiting if all(dep in finished for dep in depends_on[step])]",
        "    return list(waiting)",
        ("tests/model/test_schedule.py",),
    ),
    Mutation(
        "parallel steps: a failing branch cancels the branches still running",
        R + "_concurrent.py",
        "        for task in running:\n            task.cancel()",
        "        for task in running:\n            pass",
        ("tests/model/test_graph.py", "-k", "failing_branch"),
    ),
    Mutation(
        "when=: a step whose condition is false is skipped and never undone",
        R + "_step.py",
        "        if step.when is not None and not step.when(ctx):",
        "        if False:",
        ("tests/runtime/test_deadline.py", "-k", "condition"),
    ),
    Mutation(
        "deadline: when it passes, the running step is cancelled and the saga compensated",
        R + "_workflow.py",
        "        deadline = self.saga.deadline\n",
        "        deadline = None\n",
        ("tests/runtime/test_deadline.py", "-k", "past_its_deadline"),
    ),
    Mutation(
        "replies: a duplicate reply is refused and never reaches history",
        R + "_replies.py",
        "        if correlation in self._received:",
        "        if False:",
        ("tests/broker/test_replies.py", "-k", "positive or forged"),
    ),
    Mutation(
        "replies: a reply without the command's token is refused (401)",
        "sagaloom/client/_intake.py",
        "    if not signer.verify(body.correlation_id, body.token):",
        "    if not body.token:",
        ("tests/broker/test_replies.py", "-k", "forged"),
    ),
    Mutation(
        "replies: replies over 64 KiB are refused before they reach history",
        "sagaloom/_saga/_model.py",
        "    if size > limit:",
        "    if size > 100 * limit:",
        ("tests/broker/test_replies.py", "-k", "flood"),
    ),
    Mutation(
        "broker: each lifecycle event is stored once (its id is its Nats-Msg-Id)",
        "sagaloom/_broker/_bus.py",
        '{MSG_ID: event.id, "Content-Type": "application/cloudevents+json"},',
        '{"Content-Type": "application/cloudevents+json"},',
        ("tests/broker/test_broker.py", "-k", "lifecycle"),
    ),
    Mutation(
        "broker: a command's retried publish is stored once (Nats-Msg-Id)",
        "sagaloom/_broker/_bus.py",
        "            MSG_ID: command.msg_id,\n",
        "",
        ("tests/broker/test_broker.py", "-k", "commands_completes"),
    ),
    Mutation(
        "triggers: a re-sent event starts no second saga",
        "sagaloom/_broker/_consumers.py",
        "id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,",
        "id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,",
        ("tests/broker/test_broker.py", "-k", "events_start"),
    ),
    Mutation(
        "a saga that completes writes no SagaStatus (its execution status says it)",
        R + "_progress.py",
        "if status is not SagaStatus.COMPLETED or written:",
        "if True:",
        ("tests/runtime/test_order_saga.py", "-k", "happy_path"),
    ),
    Mutation(
        "answer early: a duplicate start attaches to the running saga",
        "sagaloom/client/_runs.py",
        "id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,",
        "id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,",
        ("tests/runtime/test_answer_early.py", "-k", "duplicate"),
    ),
    Mutation(
        "worker versioning: a saga is pinned to the build it started on",
        "sagaloom/worker/_run.py",
        'if config.versioning == "pinned"',
        'if config.versioning == "never"',
        ("tests/release/test_versioning.py",),
    ),
    Mutation(
        "cancellation: an action that finishes after the cancel is undone, nothing after runs",
        R + "_step.py",
        "        if stopped:\n            # The saga was cancelled while this action ran",
        "        if False:\n            # The saga was cancelled while this action ran",
        ("tests/runtime/test_runtime_rules.py", "-k", "finishes_anyway"),
    ),
    Mutation(
        "cancellation: on the fast path, steps run in a refused workflow task are undone too",
        R + "_workflow.py",
        "        if not any(local):\n            return",
        "        if True:\n            return",
        ("tests/runtime/test_runtime_rules.py", "-k", "finishes_anyway"),
    ),
    Mutation(
        "configuration: a true/false variable with any other value is refused, naming it",
        "sagaloom/_config/_settings.py",
        '    raise ConfigError(f"{name}={raw!r} must be true or false (1/0, yes/no, on/off)")',
        "    return default",
        ("tests/worker/test_config.py", "-k", "true_false"),
    ),
    Mutation(
        "configuration: to_env writes what from_env reads back, for every setting",
        "sagaloom/_config/_settings.py",
        "            text = self.words[0] if value else self.words[1]",
        '            text = "true" if value else ""',
        ("tests/worker/test_config.py", "-k", "inverse"),
    ),
    Mutation(
        "configuration: the docs' table is the settings table",
        "sagaloom/_config/_settings.py",
        '      "activity slots", "--max-concurrent-activities"),',
        '      "activity slots (all kinds)", "--max-concurrent-activities"),',
        ("tests/worker/test_config.py", "-k", "docs"),
    ),
    Mutation(
        "CLI: a refusal by Temporal is one line naming the saga, exit 2, no traceback",
        "sagaloom/_cli/_explain.py",
        "    if isinstance(err, RPCError):",
        "    if False:",
        ("tests/runtime/test_bad_input.py", "-k", "clear_errors"),
    ),
    Mutation(
        "CLI: every command's --help ends with an example",
        "sagaloom/_cli/_common.py",
        '        epilog=f"example:\\n  {example}",',
        "        epilog=None,",
        ("tests/worker/test_config.py", "-k", "example"),
    ),
    Mutation(
        "layout: no production room imports the embedded servers",
        "sagaloom/worker/_run.py",
        "from sagaloom.client._search_attributes import ensure_search_attributes",
        "from sagaloom.server import ensure_search_attributes",
        ("tests/house/test_layout.py",),
    ),
    Mutation(
        "outages: a refusal (4xx) or a fault (500) never opens a service's breaker",
        "sagaloom/participants/_http_activity.py",
        "        unavailable = response.status_code in UNAVAILABLE_STATUSES",
        "        unavailable = response.status_code >= 400",
        ("tests/outages/test_breaker.py", "-k", "refusals"),
    ),
    Mutation(
        "outages: a step waiting for its service's breaker spends no attempts",
        "sagaloom/participants/_http_activity.py",
        "        elif guarded:\n            await self.breakers.check(request.service, what)",
        "        elif False:\n            pass",
        ("tests/outages/test_breaker.py", "-k", "long_outage"),
    ),
    Mutation(
        "outages: a step waits while its service's breaker is open, it does not compensate",
        "sagaloom/_runtime/_actions.py",
        "                    await self._waits.wait(step.name, held_by or action.service)",
        "                    raise",
        ("tests/outages/test_breaker.py", "-k", "long_outage"),
    ),
    Mutation(
        "outages: waiting steps are released at the set rate, not all at once",
        "sagaloom/_runtime/_breaker.py",
        '        await workflow.sleep(pause, summary="release rate")',
        "        await workflow.sleep(0.001)",
        ("tests/outages/test_breaker.py", "-k", "long_outage"),
    ),
    Mutation(
        "outages: a step waits at most its service's outage budget, then compensates",
        "sagaloom/_runtime/_breaker.py",
        "        if not view.expired and workflow.now() - view.opened_at >= settings.outage_budget"
        ":",
        "        if False:",
        ("tests/outages/test_breaker.py", "-k", "budget"),
    ),
    Mutation(
        "outages: a few unavailable answers among many do not open a service's breaker",
        "sagaloom/participants/_breakers.py",
        "            if not self.mostly_failing(service):",
        "            if False:",
        ("tests/outages/test_breaker.py", "-k", "few_503s"),
    ),
    Mutation(
        "outages: a Command step whose participant is down waits for its breaker, it does not "
        "compensate",
        "sagaloom/_runtime/_actions.py",
        "        if self._breaker_on(step):\n            return await self._guarded_command(",
        "        if False:\n            return await self._guarded_command(",
        ("tests/outages/test_command_breaker.py",),
    ),
    Mutation(
        "outages: a command is not sent while its service's breaker is open",
        "sagaloom/_broker/_bus.py",
        "        elif guarded:  # the saga waits while its service is down or an operator holds "
        "the step",
        "        elif False:",
        ("tests/outages/test_command_breaker.py",),
    ),
    Mutation(
        "outages: a command participant is down when no consumer pulls or acknowledged lately",
        "sagaloom/_broker/_bus.py",
        "            if (info.num_waiting or 0) > 0 or (seen and now - max(seen) < recent):",
        "            if True:",
        ("tests/outages/test_command_breaker.py",),
    ),
    Mutation(
        "limits: a limited service's calls go at most its rate, all workers together",
        "sagaloom/worker/_plugin.py",
        "                    max_task_queue_activities_per_second=limit.calls_per_second,",
        "                    max_task_queue_activities_per_second=None,",
        ("tests/outages/test_limits.py",),
    ),
    Mutation(
        "limits: a limited service gets at most its concurrency of calls at once (per worker)",
        "sagaloom/worker/_plugin.py",
        "                    max_concurrent_activities=limit.max_concurrent or 100,",
        "                    max_concurrent_activities=100,",
        ("tests/outages/test_limits.py",),
    ),
    Mutation(
        "limits: the HTTP calls to a limited service go to that service's own task queue",
        "sagaloom/_runtime/_routing.py",
        "            and request.service in self._services",
        "            and False",
        ("tests/outages/test_limits.py",),
    ),
    Mutation(
        "toolkit: the key and answer commit with the handler's writes; a repeat is replayed",
        "sagaloom/service/_inbox.py",
        "                    await self._claim(session, key)\n"
        "                    answer = await handler(session)\n",
        "                    answer = await handler(session)\n",
        ("tests/toolkit/test_service_inbox.py",),
    ),
    Mutation(
        "toolkit: the key row is taken first, so a concurrent duplicate waits and is replayed",
        "sagaloom/service/_inbox.py",
        "                    await self._claim(session, key)\n"
        "                    answer = await handler(session)\n",
        "                    answer = await handler(session)\n"
        "                    await self._claim(session, key)\n",
        ("tests/toolkit/test_service_inbox.py", "-k", "concurrent"),
    ),
    Mutation(
        "toolkit: a compensation before its forward call leaves a tombstone that refuses it",
        "sagaloom/service/_inbox.py",
        "                        await session.execute(insert(self.table).values(**_tombstone("
        "undoes)))",
        "                        pass",
        ("tests/toolkit/test_service_inbox.py", "-k", "tombstone"),
    ),
    Mutation(
        "toolkit: a refusal keeps none of the handler's writes",
        "sagaloom/service/_inbox.py",
        "                    answer = await handler(session)\n"
        "                    if answer.status >= 500:  # a fault",
        "                    try:\n"
        "                        answer = await handler(session)\n"
        "                    except Refused as no:\n"
        "                        answer = no.answer()\n"
        "                    if answer.status >= 500:  # a fault",
        ("tests/toolkit/test_service_inbox.py", "-k", "refusal"),
    ),
    Mutation(
        "toolkit: a 5xx answer keeps nothing, so a retry runs the handler again",
        "sagaloom/service/_inbox.py",
        "                    if answer.status >= 500:  # a fault",
        "                    if False:  # a fault",
        ("tests/toolkit/test_service_inbox.py", "-k", "failed_handler"),
    ),
    Mutation(
        "toolkit: a command without a valid Idempotency-Key is refused (400), nothing applied",
        "sagaloom/service/_endpoints.py",
        "        if (problem := key_problem(key)) is not None:",
        "        if (problem := key_problem(key)) is not None and False:",
        ("tests/toolkit/test_service_http.py", "-k", "bad_command"),
    ),
    Mutation(
        "toolkit: a reply is written in the business transaction (none for a rolled-back one)",
        "sagaloom/service/_outbox.py",
        "        await tx.execute(\n            insert(self.table).values(\n",
        "        async with self.sessions() as own, own.begin():\n"
        "          await own.execute(\n"
        "            insert(self.table).values(\n",
        ("tests/toolkit/test_service_outbox.py", "-k", "committed"),
    ),
    Mutation(
        "toolkit: a reply the engine refuses (4xx) is final, not retried",
        "sagaloom/service/_outbox.py",
        "            if 400 <= response.status_code < 500:  # refused for good",
        "            if False:  # refused for good",
        ("tests/toolkit/test_service_outbox.py", "-k", "back_off"),
    ),
    Mutation(
        "toolkit: a reply left by a crash is sent at once after the restart",
        "sagaloom/service/_outbox.py",
        "                await self.deliver_due(all_pending=first)",
        "                await self.deliver_due(all_pending=False)",
        ("tests/toolkit/test_service_outbox.py", "-k", "sigkill"),
    ),
    Mutation(
        "toolkit: a NATS command is acknowledged only once its transaction committed",
        "sagaloom/service/_commands.py",
        "        assert key is not None\n        command = CommandInfo(",
        "        assert key is not None\n        await message.ack()\n"
        "        command = CommandInfo(",
        ("tests/toolkit/test_service_nats.py", "-k", "lost"),
    ),
    Mutation(
        "toolkit: a NATS command on a held record is delivered again later, not answered no",
        "sagaloom/service/_commands.py",
        "        if answer.status >= 500 or answer.status == 429:",
        "        if answer.status >= 500:",
        ("tests/toolkit/test_service_nats.py", "-k", "another_saga_holds"),
    ),
    Mutation(
        "toolkit: a record another saga holds makes the command wait (no dirty read)",
        "sagaloom/service/_semantic_locks.py",
        "                raise _held(resource, holder, wait)",
        "                continue",
        ("tests/toolkit/test_service_locks.py", "-k", "half_done"),
    ),
    Mutation(
        "toolkit: a step's locks are released in its compensation's transaction",
        "sagaloom/service/_endpoints.py",
        "                    await self.locks.release_step(tx, forward_key(command.key) or "
        "command.key)",
        "                    pass",
        ("tests/toolkit/test_service_locks.py", "-k", "half_done"),
    ),
    Mutation(
        "codec server: a token that is not UTF-8 is a wrong token (401), never a 500",
        "sagaloom/_ops/_codec_server.py",
        '(request.headers.get("Authorization") or "").encode("utf-8", "surrogateescape")',
        '(request.headers.get("Authorization") or "").encode()',
        ("tests/payloads/test_security.py", "-k", "ui_codec"),
    ),
    Mutation(
        "engine: a saga with notify_participants tells its services that it ended",
        "sagaloom/_runtime/_notice.py",
        "    if not saga.notify_participants:",
        "    if True:",
        ("tests/toolkit/test_service_locks.py", "-k", "bank_was_down"),
    ),
    Mutation(
        "errors: an action whose budget ended its retries says it timed out, with the last error",
        R + "_failures.py",
        "    budget_spent = isinstance(err, ActivityError) and "
        "err.retry_state == RetryState.TIMEOUT",
        "    budget_spent = False",
        ("tests/runtime/test_runtime_rules.py", "-k", "budget"),
    ),
    Mutation(
        "exclusive: a saga takes its keys in one global order (no deadlock)",
        "sagaloom/_saga/_definition.py",
        "        return sorted(set(keys))",
        "        return list(dict.fromkeys(keys))",
        ("tests/runtime/test_exclusive.py", "-k", "deadlock"),
    ),
    Mutation(
        "exclusive: a key has one holder at a time",
        R + "_keyrules.py",
        "    if state.idle():\n        state.holder, state.since",
        "    if True:\n        state.holder, state.since",
        ("tests/runtime/test_exclusive.py", "-k", "half_done or interleavings"),
    ),
    Mutation(
        "exclusive: a saga releases its keys however it ends (cancelled too)",
        R + "_workflow.py",
        "        await shielded(self._keys.release())",
        "        if self._progress.state.status is not SagaStatus.CANCELED:\n"
        "            await shielded(self._keys.release())",
        ("tests/runtime/test_exclusive.py", "-k", "however"),
    ),
    Mutation(
        "exclusive: a holder that closed without releasing is noticed; the key goes on",
        R + "_keylocks.py",
        "            if holder in closed and lock is not None and lock.holder == holder:",
        "            if False:",
        ("tests/runtime/test_exclusive.py", "-k", "however"),
    ),
    Mutation(
        "exclusive: a waiting saga gives up at its exclusive_timeout, before any step",
        R + "_exclusive.py",
        "                left = None if patience is None else "
        "patience - (workflow.now() - started)",
        "                left = None",
        ("tests/runtime/test_exclusive.py", "-k", "exclusive_timeout"),
    ),
    Mutation(
        "exclusive: a parked saga keeps its keys until it is resolved",
        R + "_workflow.py",
        "        except StepFailed as failed:\n",
        "        except StepFailed as failed:\n            await self._keys.release()\n",
        ("tests/runtime/test_exclusive.py", "-k", "parked"),
    ),
    Mutation(
        "release line: a run of a line this build dropped stops with UnsupportedRun, naming the "
        "release to run it on; it is never replayed on the wrong branches",
        R + "_line.py",
        "    for line in CURRENT.replays:  # this build's own line first",
        "    return\n    for line in CURRENT.replays:  # this build's own line first",
        ("tests/release/test_replay.py", "-k", "dropped_line"),
    ),
    Mutation(
        "configuration: a plugin given its WorkerConfig reads no environment",
        "sagaloom/worker/_plugin.py",
        "        config = config or WorkerConfig.from_env()  # the one read of the environment",
        "        config = WorkerConfig.from_env()",
        ("tests/worker/test_plugin.py", "-k", "one_path"),
    ),
    Mutation(
        "upgrade-check: running sagas that recorded no release block an upgrade to a release "
        "that does not replay them",
        "sagaloom/_wire/_release.py",
        "            if 0 not in target.replays:",
        "            if False:",
        ("tests/release/test_upgrade_check.py", "-k", "drained"),
    ),
    Mutation(
        "exclusive: a key shard's tasks run outside the sandbox (no sandbox cost per grant)",
        R + "_keylocks.py",
        "@workflow.defn(name=KEY_SHARD_WORKFLOW, sandboxed=False)",
        "@workflow.defn(name=KEY_SHARD_WORKFLOW)",
        ("tests/worker/test_plugin.py", "-k", "key_shards"),
    ),
    Mutation(
        "exclusive: the key shards' worker passes sagaloom through its sandbox",
        "sagaloom/worker/_plugin.py",
        'workflow_runner=_with_passthrough(config.get("workflow_runner")),',
        'workflow_runner=config.get("workflow_runner") or _with_passthrough(None),',
        ("tests/worker/test_plugin.py", "-k", "key_shards"),
    ),
    Mutation(
        "exclusive: a process's asks of one shard go together (one Update in flight per shard)",
        "sagaloom/client/_keydesk.py",
        "        number = shard_of(request.key)\n",
        "        number = shard_of(request.key)\n"
        "        return (await self._acquire(number, [request]))[0]\n",
        ("tests/runtime/test_exclusive.py", "-k", "burst"),
    ),
    Mutation(
        "exclusive: the asks that wait while an Update is in flight leave in the next one",
        "sagaloom/client/_keydesk.py",
        "MOST_AT_ONCE = 200\n",
        "MOST_AT_ONCE = 1\n",
        ("tests/runtime/test_exclusive.py", "-k", "burst"),
    ),
    Mutation(
        "exclusive: a saga counts the keys start_saga took for it (no ask of its own)",
        R + "_exclusive.py",
        "        if KEY_EARLY_MEMO not in info.raw_memo:\n",
        "        if True:\n",
        ("tests/runtime/test_exclusive.py", "-k", "finds_them_taken"),
    ),
    Mutation(
        "exclusive: an early ask (before the start) never takes a key someone holds",
        R + "_keyrules.py",
        "        if not state.idle():\n",
        "        if False:\n",
        ("tests/model/test_key_rules.py", "-k", "held_key"),
    ),
    Mutation(
        "exclusive: start_saga takes 20 keys at most before a start (the memo stays small)",
        "sagaloom/client/_keydesk.py",
        "MOST_EARLY_KEYS = 20\n",
        "MOST_EARLY_KEYS = 10_000\n",
        ("tests/runtime/test_exclusive.py", "-k", "many_keys"),
    ),
    Mutation(
        "exclusive: a start that did not happen gives the keys taken for it back",
        "sagaloom/client/_runs.py",
        "                    await desk.drop_early(early, id)\n",
        "                    pass\n",
        ("tests/runtime/test_exclusive.py", "-k", "did_not_happen"),
    ),
    Mutation(
        "exclusive: an early hold its saga asked for since is not given back",
        R + "_keyrules.py",
        "        if state.holder == saga_id and state.early:\n",
        "        if state.holder == saga_id:\n",
        ("tests/model/test_key_rules.py", "-k", "its_own"),
    ),
    Mutation(
        "exclusive: a key taken for a saga that never started is freed once the grace is over",
        R + "_keyrules.py",
        "        return self.early and self.since is not None and now - self.since < EARLY_GRACE",
        "        return self.early",
        ("tests/runtime/test_exclusive.py", "-k", "never_started"),
    ),
    Mutation(
        "exclusive: a saga counts keys taken for it only if it started soon after",
        R + "_exclusive.py",
        "        if info.workflow_start_time - early.since > EARLY_TRUST:\n",
        "        if False:\n",
        ("tests/runtime/test_exclusive.py", "-k", "long_after"),
    ),
    Mutation(
        "toolkit: commands on the embedded SQLite are applied in arrival order (no starvation)",
        "sagaloom/service/_engine.py",
        '    options = {"pool_size": 1, "max_overflow": 0',
        '    options = {"pool_size": 4, "max_overflow": 0',
        ("tests/toolkit/test_service_inbox.py", "-k", "arrival_order"),
    ),
    Mutation(
        "sandbox: a module whose builders pass the check is imported once, not for every run",
        "sagaloom/worker/_plugin.py",
        "            restrictions = runner.restrictions.with_passthrough_modules(*modules)",
        "            restrictions = runner.restrictions",
        ("tests/worker/test_purity.py", "-k", "imported_once"),
    ),
    Mutation(
        "sandbox: a builder that reaches the clock keeps its module sandboxed, the call refused",
        "sagaloom/worker/_purity.py",
        "CLOCK_ATTRIBUTES = frozenset({",
        "CLOCK_ATTRIBUTES = frozenset() and frozenset({",
        ("tests/runtime/test_sandbox.py", "tests/worker/test_purity.py"),
    ),
    Mutation(
        "sandbox: the check follows a builder into the functions it calls",
        "sagaloom/worker/_purity.py",
        "            _scan_function(target, found, seen, depth + 1)",
        "            pass",
        ("tests/worker/test_purity.py",),
    ),
    Mutation(
        "sandbox: a saga module is re-imported in the sandbox, which refuses the clock and random",
        "sagaloom/worker/_plugin.py",
        "    restrictions = existing.restrictions.with_passthrough_modules(*PASSTHROUGH)",
        "    restrictions = existing.restrictions.with_passthrough_all_modules()",
        ("tests/runtime/test_sandbox.py", "-k", "refused"),
    ),
    Mutation(
        "exclusive: a saga that waits for a key says so in a saga.waiting lifecycle event",
        R + "_progress.py",
        '        self.events.emit("saga.waiting", self.state.key, exclusive_key=key, '
        "holder=holder)",
        "        pass",
        ("tests/runtime/test_exclusive.py", "-k", "lifecycle"),
    ),
    Mutation(
        "exclusive: a saga that waits for a key is counted by key family (metrics)",
        "sagaloom/_ops/_metrics.py",
        '            self._key_waits.add(1, {"family": family})',
        "            pass",
        ("tests/runtime/test_exclusive.py", "-k", "counted"),
    ),
    Mutation(
        "exclusive: a bad key function fails at the client, before the start",
        "sagaloom/client/_runs.py",
        "    keys = saga.exclusive_keys(parsed)  # a key function that fails, fails here, "
        "before the start\n",
        "    keys: list[str] = []\n",
        ("tests/runtime/test_exclusive.py", "-k", "bad_key"),
    ),
    Mutation(
        "fan-out: an item already undone (a tolerated failure) is not compensated twice",
        "sagaloom/_saga/_fanout_rules.py",
        "may_have_taken_effect(r.status) and r.index not in undone]",
        "may_have_taken_effect(r.status)]",
        ("tests/runtime/test_fanout.py", "-k", "not_undone_again"),
    ),
    Mutation(
        "fan-out: a refused item took no effect, so it is never undone",
        "sagaloom/_saga/_fanout_rules.py",
        "_MAY_HAVE_RUN = frozenset({ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.CANCELLED})",
        "_MAY_HAVE_RUN = frozenset({ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.CANCELLED,"
        " ItemStatus.REFUSED})",
        ("tests/runtime/test_fanout.py", "-k", "refused or tolerated"),
    ),
    Mutation(
        "fan-out: at most max_concurrency items run at once",
        R + "_items.py",
        "while waiting and len(running) < batch.max_concurrency and not",
        "while waiting and len(running) <= batch.max_concurrency and not",
        ("tests/runtime/test_fanout.py", "-k", "window"),
    ),
    Mutation(
        "fan-out: an item cancelled while it ran may have taken effect, so it is undone",
        R + "_items.py",
        "            elif is_cancelled_exception(err):\n"
        "                result.status = ItemStatus.CANCELLED",
        "            elif is_cancelled_exception(err):\n"
        "                result.status = ItemStatus.NOT_STARTED",
        ("tests/runtime/test_fanout.py", "-k", "cancel_mid"),
    ),
    Mutation(
        "fan-out: duplicate item keys are refused at the client, before the start",
        "sagaloom/client/_runs.py",
        "    saga.check_items(parsed)  # so do a fan-out's duplicate or invalid item keys",
        "    pass",
        ("tests/runtime/test_fanout.py", "-k", "duplicate"),
    ),
    Mutation(
        "fan-out: after a park, a retry undoes only the items not undone yet",
        "sagaloom/_runtime/_fanout.py",
        "        todo = to_undo(run.results.values(), run.undone)",
        "        todo = to_undo(run.results.values(), set())",
        ("tests/runtime/test_fanout.py", "-k", "parks"),
    ),
    Mutation(
        "fan-out: an item output too large for its batch fails the item (never a stuck batch)",
        R + "_items.py",
        "        if self._output_bytes + size > budget:",
        "        if False:",
        ("tests/runtime/test_fanout.py", "-k", "too_large"),
    ),
    Mutation(
        "fan-out: a running fan-out replays on the code that follows (its batches' ids kept)",
        "sagaloom/_wire/_names.py",
        '    return f"{workflow_id}:{step}:items-{batch}"',
        '    return f"{workflow_id}:{step}:batch-{batch}"',
        ("tests/release/test_replay.py", "-k", "fan_out"),
    ),
    Mutation(
        "fan-out: a batch terminated by hand counts its items as maybe done, never as refused",
        "sagaloom/_runtime/_fanout.py",
        "        except ChildWorkflowError as err:  # terminated by hand: any of its items "
        "may have run",
        "        except ZeroDivisionError as err:  # terminated by hand: any of its items "
        "may have run",
        ("tests/runtime/test_fanout.py", "-k", "terminated"),
    ),
    Mutation(
        "fan-out: saga show --items lists every item of a cancelled saga (from history)",
        "sagaloom/client/_history.py",
        '        elif kind == "start_child_workflow_execution_initiated_event_attributes":',
        "        elif False:",
        ("tests/runtime/test_fanout_show.py",),
    ),
    Mutation(
        "fan-out: saga show --items lists the items never reached as not_started",
        "sagaloom/client/_views.py",
        "            for index in range(step.items.total)",
        "            for index in range(0)",
        ("tests/runtime/test_fanout_show.py",),
    ),
    Mutation(
        "fan-out: saga show --items lists a terminated batch's items as cancelled",
        "sagaloom/client/_views.py",
        "        batch = await _batch_input(client, run)",
        "        batch = None",
        ("tests/runtime/test_fanout_show.py",),
    ),
    Mutation(
        "undo order: a step is undone after every started step that depends on it, through "
        "steps its condition skipped",
        "sagaloom/_saga/_graph.py",
        "            descendants[dep] |= {name} | descendants[name]",
        "            descendants[dep] |= {name}",
        ("tests/runtime/test_undo_order.py",),
    ),
    Mutation(
        "undo order: a step skipped by its condition is never compensated",
        R + "_step.py",
        "        if step.when is not None and not step.when(ctx):\n"
        "            state.status = StepStatus.SKIPPED  # its condition is false: never run, never "
        "undone\n            return\n        if undoable(step):\n",
        "        if undoable(step):\n            progress.register(name)\n"
        "        if step.when is not None and not step.when(ctx):\n"
        "            state.status = StepStatus.SKIPPED  # its condition is false: never run, never "
        "undone\n            return\n        if undoable(step):\n",
        ("tests/runtime/test_undo_order.py",),
    ),
    Mutation(
        "participants: every 5xx is retried (the status table, 500-599)",
        "sagaloom/participants/_classify.py",
        "    if status >= 500 or status in _RETRYABLE_4XX:",
        "    if 500 <= status < 599 or status in _RETRYABLE_4XX:",
        ("tests/model/test_status_table.py",),
    ),
    Mutation(
        "participants: a 1xx is an unknown outcome, undone, never a refusal (the status table)",
        "sagaloom/participants/_classify.py",
        "    if not 400 <= status < 500:  # a 3xx (not followed) or 1xx: it may have taken effect",
        "    if 300 <= status < 400:  # a 3xx (not followed) or 1xx: it may have taken effect",
        ("tests/model/test_status_table.py",),
    ),
    Mutation(
        "logs: a participant's refusal is expected: the SDK logs it at DEBUG, one line from the "
        "saga",
        "sagaloom/participants/_classify.py",
        "        message, details, type=PARTICIPANT_REJECTED, non_retryable=True, "
        "category=EXPECTED",
        "        message, details, type=PARTICIPANT_REJECTED, non_retryable=True",
        ("tests/worker/test_quiet_logs.py",),
    ),
    Mutation(
        "logs: a participant answering 500 or down is expected while retried: no traceback",
        "sagaloom/participants/_classify.py",
        '        f"{what} -> {reason}", {"attempt": attempt}, type=PARTICIPANT_UNAVAILABLE, '
        "category=EXPECTED",
        '        f"{what} -> {reason}", {"attempt": attempt}, type=PARTICIPANT_UNAVAILABLE',
        ("tests/worker/test_quiet_logs.py",),
    ),
    Mutation(
        "encryption: SagaloomPlugin() reads SAGALOOM_ENCRYPTION_KEYS, the README's way too",
        "sagaloom/worker/_plugin.py",
        "            if keys is not None\n            else codec_from_env()",
        "            if False\n            else None",
        ("tests/payloads/test_encryption_everywhere.py", "-k", "readme_way"),
    ),
    Mutation(
        "encryption: a process without keys names SAGALOOM_ENCRYPTION_KEYS when it meets an "
        "encrypted payload",
        "sagaloom/_encoding/_converter.py",
        "        super().__init__(*PydanticPayloadConverter().converters.values(), "
        "_EncryptedPayloads())",
        "        super().__init__(*PydanticPayloadConverter().converters.values())",
        ("tests/payloads/test_encryption_everywhere.py", "-k", "without_keys"),
    ),
    Mutation(
        "connect() reads TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE",
        "sagaloom/client/_runs.py",
        '    namespace = namespace or setting("namespace").read(env)',
        '    namespace = namespace or "default"',
        ("tests/payloads/test_encryption_everywhere.py", "-k", "address_and_namespace"),
    ),
    Mutation(
        "a business key runs once: a second start of a closed saga is refused, naming the run",
        "sagaloom/client/_runs.py",
        "                await _refuse_closed(client, saga.name, id)",
        "                pass",
        ("tests/runtime/test_business_key.py", "-k", "closed_key_is_refused"),
    ),
    Mutation(
        "a business key runs once: an answer-early start of a closed saga answers from its run",
        "sagaloom/client/_runs.py",
        "        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,",
        "        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,",
        ("tests/runtime/test_business_key.py", "-k", "answer_early"),
    ),
    Mutation(
        "breaker: opened by hand it holds its steps until --auto; a probe never closes it",
        R + "_breaker.py",
        '        if view.status is BreakerStatus.OPEN and view.forced != "open" and not '
        "self._ordered:",
        "        if view.status is BreakerStatus.OPEN and not self._ordered:",
        ("tests/outages/test_breaker.py", "-k", "opened_by_hand"),
    ),
    Mutation(
        "breaker: one per service and app, also for a limited service on its own task queue",
        "sagaloom/_saga/_outage.py",
        '    return task_queue.removesuffix(f"@{service}")',
        "    return task_queue",
        ("tests/outages/test_breaker.py", "-k", "limited_service"),
    ),
    Mutation(
        "locks: the saga that holds a record may lock it again (re-entrant)",
        "sagaloom/service/_semantic_locks.py",
        "            if holder == saga:\n                continue\n",
        "",
        ("tests/toolkit/test_service_lock_rules.py",),
    ),
    Mutation(
        "locks: wait=False refuses a held record (409, kept and replayed), never waits",
        "sagaloom/service/_semantic_locks.py",
        '    return Busy(resource, holder) if wait else Refused(f"{resource} is held by saga '
        '{holder}", 409)',
        "    return Busy(resource, holder)",
        ("tests/toolkit/test_service_lock_rules.py",),
    ),
    Mutation(
        "broker: the gaps between re-sent undo commands grow by the back-off, not a fixed pace",
        R + "_actions.py",
        "            pause = min(pause * retry.backoff_coefficient, retry.maximum_interval or "
        "pause * 100)",
        "            pause = retry.initial_interval",
        ("tests/broker/test_broker.py", "-k", "gaps_between"),
    ),
    Mutation(
        "broker: the re-send back-off stops growing at maximum_interval",
        R + "_actions.py",
        "            pause = min(pause * retry.backoff_coefficient, retry.maximum_interval or "
        "pause * 100)",
        "            pause = pause * retry.backoff_coefficient",
        ("tests/broker/test_broker.py", "-k", "gaps_between"),
    ),
    Mutation(
        "breaker: a Command service's breaker counts only consumers of that service's subjects",
        "sagaloom/_broker/_bus.py",
        "            if filters and not any(_takes(f, base) for f in filters):",
        "            if False:",
        ("tests/outages/test_command_breaker.py", "-k", "counts_only"),
    ),
    Mutation(
        "hold: an unexpected failure holds the saga at its step; it never compensates on its own",
        R + "_step.py",
        "        if not holds(policy, kind):",
        "        if True:",
        ("tests/runtime/test_hold.py", "-k", "500_until"),
    ),
    Mutation(
        "hold: a business refusal still compensates under on_failure=hold",
        "sagaloom/_saga/_holding.py",
        '    "hold": frozenset({"unavailable", "timeout", "unknown", "bug"}),',
        '    "hold": frozenset({"refused", "unavailable", "timeout", "unknown", "bug"}),',
        ("tests/runtime/test_hold.py", "-k", "refusal"),
    ),
    Mutation(
        "redrive: a step refused under its key is redriven under a new key",
        "sagaloom/_saga/_holding.py",
        '    return kind == "refused"',
        "    return False",
        ("tests/runtime/test_hold.py", "-k", "refusal"),
    ),
    Mutation(
        "redrive: a step whose outcome is unknown is redriven under its own key (at most once)",
        "sagaloom/_saga/_holding.py",
        '    return kind == "refused"',
        "    return True",
        ("tests/runtime/test_hold.py", "-k", "500_until"),
    ),
    Mutation(
        "redrive: a decision sent again (the same id) is applied once",
        R + "_parking.py",
        "        if resolution.id and resolution.id in self._applied:\n"
        "            return self._progress.state\n",
        "",
        ("tests/runtime/test_hold.py", "-k", "repeated"),
    ),
    Mutation(
        "redrive: the business key cannot change with a corrected input",
        R + "_parking.py",
        "            if key != self._progress.state.key:",
        "            if False:",
        ("tests/runtime/test_hold.py", "-k", "corrected_input"),
    ),
    Mutation(
        "mark-done: the output given is validated against the step's output model",
        R + "_parking.py",
        "            if model is not None:",
        "            if False:",
        ("tests/runtime/test_hold.py", "-k", "mark_done"),
    ),
    Mutation(
        "hold: a held saga's SagaStep names the held step (bulk queries find it)",
        R + "_progress.py",
        "                updates.append(SAGA_STEP.value_set(self.state.parked_step))  # where it "
        "waits",
        "                pass",
        ("tests/runtime/test_hold.py", "-k", "500_until"),
    ),
    Mutation(
        "hold: a held saga whose deadline passes compensates, the held step named as failed",
        R + "_workflow.py",
        "            running = self._progress.state.parked_step or next(",
        "            running = next(",
        ("tests/runtime/test_hold.py", "-k", "deadline"),
    ),
    Mutation(
        "bulk redrive: at most --rate sagas a second",
        "sagaloom/client/_operations.py",
        "        await asyncio.sleep(max(0.0, next_at - time.monotonic()))",
        "        await asyncio.sleep(0)",
        ("tests/runtime/test_incidents.py", "-k", "bad_deploy"),
    ),
    Mutation(
        "hold before a step: sagas that reach it wait without calling it until released",
        "sagaloom/participants/_breakers.py",
        '        for name, why in ((hold, "an operator holds the step"),',
        '        for name, why in ((service + "-", "an operator holds the step"),',
        ("tests/outages/test_breaker.py", "-k", "holds_a_step"),
    ),
    Mutation(
        "redrive --to-build moves a pinned saga to the fixed build before its redrive",
        "sagaloom/_cli/_incidents.py",
        "        await move_to_build(temporal, args.id, args.deployment, args.to_build)",
        "        pass",
        ("tests/release/test_versioning.py", "-k", "moved_to_the_fixed"),
    ),
    Mutation(
        "toolkit: a redrive's new key names its step (steps={...} still takes it)",
        "sagaloom/service/_handlers.py",
        '        return step_of_key((forward_key(self.key) or self.key).rsplit(":", 1)[-1])',
        '        return (forward_key(self.key) or self.key).rsplit(":", 1)[-1]',
        ("tests/toolkit/test_service_redrive_keys.py",),
    ),
    Mutation(
        "exclusive: a child saga shares the key its parent holds, and its release leaves it",
        R + "_keyrules.py",
        "    if state.holder is not None and state.holder in request.family:",
        "    if False:",
        ("tests/model/test_key_rules.py", "-k", "child_saga_shares"),
    ),
    Mutation(
        "fan-out: tolerate counts failures across batches; past it no further item starts",
        R + "_fanout.py",
        "            batch = self._batch(step, calls, undo=False, allowed=allowed - failures)",
        "            batch = self._batch(step, calls, undo=False, allowed=allowed)",
        ("tests/runtime/test_fanout.py", "-k", "tolerance_spent"),
    ),
    Mutation(
        "operations: every dashboard panel reads a metric the workers export",
        "deploy/grafana/dashboards/sagaloom.json",
        '"expr": "max by (saga) (sagaloom_sagas_parked)"',
        '"expr": "max by (saga) (sagaloom_parked_sagas)"',
        ("tests/ops/test_operations.py", "-k", "dashboard_panel"),
    ),
    Mutation(
        "operations: the parked-saga alert reads the gauge of sagas parked now",
        "deploy/prometheus/alerts.yml",
        "        expr: max by (saga) (sagaloom_sagas_parked) > 0",
        "        expr: max by (saga) (sagaloom_saga_parked) > 0",
        ("tests/ops/test_operations.py", "-k", "promtool or alert"),
    ),
    Mutation(
        "operations: the parked gauge counts the sagas parked now (from visibility)",
        "sagaloom/worker/_parked.py",
        'SagaStatus = "{SagaStatus.NEEDS_ATTENTION}"',
        'SagaStatus = "{SagaStatus.FAILED}"',
        ("tests/ops/test_operations.py", "-k", "parked_saga_fires"),
    ),
    Mutation(
        "payloads: a broker body over the message limit travels as a stored reference",
        "sagaloom/storage/_bodies.py",
        "    if len(data) <= most:",
        "    if True:",
        ("tests/payloads/test_payloads.py", "-k", "5_mb"),
    ),
    Mutation(
        "payloads: a stored body is read back before the command is applied",
        "sagaloom/service/_commands.py",
        "    if not (message.headers or {}).get(BODY_REF_HEADER):",
        "    if True:",
        ("tests/payloads/test_payloads.py", "-k", "5_mb"),
    ),
    Mutation(
        "payloads: with a store, a saga input is bounded by SAGALOOM_MAX_INPUT_BYTES",
        "sagaloom/client/_runs.py",
        '    most = setting("max_input_bytes").read(os.environ) if stored else MAX_INPUT_BYTES',
        "    most = MAX_INPUT_BYTES",
        ("tests/payloads/test_payloads.py", "-k", "input or 5_mb"),
    ),
    Mutation(
        "payloads: a fan-out's outputs are not capped by history when payloads are stored",
        R + "_fanout.py",
        "            output_budget=None if payloads_stored() else MAX_BATCH_OUTPUT_BYTES,",
        "            output_budget=MAX_BATCH_OUTPUT_BYTES,",
        ("tests/payloads/test_payloads.py", "-k", "fan_out"),
    ),
    Mutation(
        "payloads: the sweeper keeps what a run still refers to",
        "sagaloom/storage/_sweeper.py",
        "        return True",
        "        return False",
        ("tests/payloads/test_payloads.py", "-k", "sweeper"),
    ),
    Mutation(
        "payloads: a store that stays down is a clear error within the wait, never a hang",
        "sagaloom/storage/_nats_store.py",
        "                store = await asyncio.wait_for(self._store(), timeout=left)",
        "                store = await self._store()",
        ("tests/payloads/test_payload_store.py", "-k", "stays_down"),
    ),
    Mutation(
        "payloads: a store that stops answering mid-read fails the attempt within the wait, "
        "never a hang",
        "sagaloom/storage/_nats_store.py",
        "                return await asyncio.wait_for(op(store), timeout=attempt)",
        "                return await op(store)",
        ("tests/payloads/test_payload_store.py", "-k", "mid_read"),
    ),
    Mutation(
        "payloads: what the store holds is encrypted when the codec is on",
        "sagaloom/_encoding/_converter.py",
        "        payload_codec=codec,",
        "        payload_codec=codec if storage is None else None,",
        ("tests/payloads/test_payloads.py", "-k", "encrypted"),
    ),
    Mutation(
        "fan-out: at most 100,000 items; one more is an input error naming items",
        "sagaloom/_saga/_definition.py",
        "        if len(items) > MAX_ITEMS:",
        "        if len(items) >= MAX_ITEMS:",
        ("tests/model/test_definition.py", "-k", "100_000"),
    ),
    Mutation(
        "answer early: a failure first answers once the saga has compensated, never half-done",
        R + "_answers.py",
        "_UNDECIDED = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)",
        "_UNDECIDED = (SagaStatus.RUNNING,)",
        ("tests/runtime/test_answer_early.py", "-k", "compensated_report"),
    ),
    Mutation(
        "plugin: one plugin line never touches the team's own workflows or activities",
        "sagaloom/worker/_plugin.py",
        "            activities=activities or None,",
        "            activities=(lambda _own: activities) if activities else None,",
        ("tests/worker/test_plugin.py", "-k", "beside_the_teams_own"),
    ),
    Mutation(
        "plugin: only the sagas a worker names are registered on it",
        "sagaloom/worker/_plugin.py",
        "        workflows = list(sagas)",
        "        workflows = list(sagas) + [w for w in __import__('sagaloom._runtime', "
        "fromlist=['x']).SagaWorkflow.__subclasses__() if w not in sagas]",
        ("tests/worker/test_plugin.py", "-k", "only_the_sagas"),
    ),
    Mutation(
        "broker: a dead letter is never retried on its own (the consumer acknowledges it)",
        "sagaloom/_broker/_consumers.py",
        '        log.warning("dead letter (%s on %s): %s", kind, message.subject, reason)\n'
        "        await message.ack()",
        '        log.warning("dead letter (%s on %s): %s", kind, message.subject, reason)\n'
        "        await message.nak(delay=RETRY_DELAY)",
        ("tests/broker/test_broker.py", "-k", "late_reply_is_a_dead_letter_kept"),
    ),
    Mutation(
        "broker: the reply consumer acknowledges a reply only after the saga took it",
        "sagaloom/_broker/_consumers.py",
        "        intake = read_reply(data, self._broker.signer, self._broker.reply_limit)\n",
        "        intake = read_reply(data, self._broker.signer, self._broker.reply_limit)\n"
        "        await message.ack()\n",
        ("tests/broker/test_broker.py", "-k", "finds_temporal_away"),
    ),
    Mutation(
        "docs: every command and flag the docs name exists (a renamed flag fails)",
        "sagaloom/_cli/_sagas.py",
        '    p.add_argument("--status", help=',
        '    p.add_argument("--state", help=',
        ("tests/house/test_docs_names.py", "-k", "flag"),
    ),
    Mutation(
        "docs: every environment variable the docs name is read by the code (a removed one fails)",
        "sagaloom/_config/_settings.py",
        '    S("sandboxed", "SAGALOOM_SANDBOX", "bool", True,',
        '    S("sandboxed", "SAGALOOM_SANDBOXED", "bool", True,',
        ("tests/house/test_docs_names.py", "-k", "variable"),
    ),
    Mutation(
        "docs: a benchmark figure quoted on a page is the summary's, and the summary's is the "
        "run log's",
        "docs/benchmarks.md",
        "<!-- figure: keys-disjoint -->0.80\u20130.97x<!-- /figure -->",
        "<!-- figure: keys-disjoint -->0.85\u20130.97x<!-- /figure -->",
        ("tests/house/test_docs.py", "-k", "figure"),
    ),
    Mutation(
        "drawings: saga show --graph paints the run, not the bare graph",
        "sagaloom/_cli/_graphs.py",
        "    return render(paint(drawing_of(saga), state), fmt)",
        "    return render(drawing_of(saga), fmt)",
        ("tests/runtime/test_graphs.py", "-k", "show_graph_paints"),
    ),
    Mutation(
        "drawings: parallel steps share a column, a join comes after both",
        "sagaloom/_drawing/_shapes.py",
        "        depth[step.name] = 1 + max((depth[b] for b in before), default=-1)",
        "        depth[step.name] = len(depth)",
        ("tests/runtime/test_graphs.py", "-k", "parallel_steps"),
    ),
    Mutation(
        "drawings: a step the run never started is painted not run",
        "sagaloom/_drawing/_shapes.py",
        "    ours = state.saga == drawing.saga",
        "    ours = False",
        ("tests/runtime/test_graphs.py", "-k", "paints_what_ran"),
    ),
    Mutation(
        "payloads: a history holds the reference of a completed write only",
        "sagaloom/storage/_nats_store.py",
        '            await self._patiently(f"storing {name}", _putting(name, data))',
        '            __import__("asyncio").ensure_future('
        'self._patiently(f"storing {name}", _putting(name, data)))',
        ("tests/payloads/test_payload_store.py", "-k", "only_once_its_object"),
    ),
    Mutation(
        "drawings: a run's Web UI page links to its drawing",
        "sagaloom/_runtime/_links.py",
        "        if not self.drawings:",
        "        if True:",
        ("tests/runtime/test_graphs.py", "-k", "web_ui_links"),
    ),
    Mutation(
        "drawings: the drawing page follows a running saga",
        "sagaloom/_ops/_codec_server.py",
        'headers={"X-Saga-Running": "yes" if running else "no", "Cache-Control": "no-store"},',
        'headers={"X-Saga-Running": "no", "Cache-Control": "no-store"},',
        ("tests/runtime/test_graphs.py", "-k", "web_ui_links"),
    ),
    Mutation(
        "drawings: a drawing needs the codec server's token",
        "sagaloom/_ops/_codec_server.py",
        "        if denied is not None:\n            return denied\n",
        "        if False:\n            return denied\n",
        ("tests/runtime/test_graphs.py", "-k", "codec_server_draws"),
    ),
    Mutation(
        "live details: the step table in the run's current details is always on",
        "sagaloom/_saga/_definition.py",
        "    live_details: bool = True",
        "    live_details: bool = False",
        ("tests/runtime/test_live_details.py",),
    ),
    Mutation(
        "health: /readyz answers 503 until the worker polls (/healthz 200 while it lives)",
        "sagaloom/worker/_endpoint.py",
        '            web.Response(text="ready") if self.ready else',
        '            web.Response(text="ready") if True else',
        ("tests/runtime/test_failure_semantics.py", "-k", "started_before_its_server"),
    ),
    Mutation(
        "configuration: a service's URL never reaches workflow history, not even in an error",
        "sagaloom/participants/_http_activity.py",
        '        what = f"{request.service} {request.method} {request.path}"',
        '        what = f"{request.service} {request.method} '
        '{self._services.get(request.service)}{request.path}"',
        ("tests/payloads/test_security.py", "-k", "no_service_url"),
    ),
    Mutation(
        "breaker: a compensation never waits for a breaker, even one opened by hand",
        R + "_actions.py",
        "            guarded = not undo and self._breaker_on(step)",
        "            guarded = self._breaker_on(step)",
        ("tests/outages/test_breaker.py", "-k", "never_waits_for_an_open"),
    ),
    Mutation(
        "broker: a negative reply to an undo parks the saga at once, never re-sent",
        R + "_replies.py",
        '        raise ReplyFailed(f"ReplyNegative: {reason}", timed_out=False)',
        '        raise ReplyFailed(f"ReplyNegative: {reason}", timed_out=True)',
        ("tests/broker/test_broker.py", "-k", "negative_reply_to_an_undo"),
    ),
    Mutation(
        "participants: every command carries Sagaloom-Correlation-Id <workflow id>:<step>",
        "sagaloom/participants/_http_activity.py",
        "            CORRELATION_HEADER: key,",
        "            CORRELATION_HEADER: info.workflow_id,",
        ("tests/toolkit/test_http_participant.py", "-k", "correlation_id_and_a_token"),
    ),
    Mutation(
        "replies: the shared SAGALOOM_REPLY_SECRET lets any worker check a reply's token",
        "sagaloom/_wire/_reply_auth.py",
        "raw = secret.get_secret_value() if secret is not None else secrets.token_urlsafe(32)",
        "raw = secrets.token_urlsafe(32)",
        ("tests/toolkit/test_http_participant.py", "-k", "correlation_id_and_a_token"),
    ),
    Mutation(
        "alerts: a failed compensation pages once per step and clears after 10 minutes",
        "deploy/prometheus/alerts.yml",
        '            unless sagaloom_compensations{outcome="failed"} offset 10m',
        '            unless sagaloom_compensations{outcome="failed"} offset 30m',
        ("tests/ops/test_operations.py", "-k", "fires_and_stays_silent"),
    ),
    Mutation(
        "fan-out: compensations run in reverse batch order",
        R + "_fanout.py",
        "in reversed(list(enumerate(batches(len(run.items), each.batch_size)))):",
        "in list(enumerate(batches(len(run.items), each.batch_size))):",
        ("tests/runtime/test_fanout.py", "-k", "undos_go_batch_by_batch"),
    ),
    Mutation(
        "demo: its NATS server is its own on a free loopback port, never someone's on 4222",
        "workers/demo.py",
        '    nats_url = args.nats or f"nats://127.0.0.1:{free_port()}"',
        "    nats_url = args.nats or DEFAULT_NATS_URL",
        ("tests/ops/test_demo.py", "-k", "starts_the_embedded"),
    ),
)


def apply(mutation: Mutation) -> str:
    """Apply ``mutation`` on disk and return the original text.

    Raises:
        ValueError: the text to change does not occur exactly once (the code moved on).
    """
    path = ROOT / mutation.path
    original = path.read_text()
    count = original.count(mutation.old)
    if count != 1:
        raise ValueError(f"{mutation.path}: expected the text once, found it {count} times")
    mutated = original.replace(mutation.old, mutation.new)
    if path.suffix == ".py":  # a mutant that does not compile would fail every test: not a catch
        compile(mutated, str(path), "exec")
    path.write_text(mutated)
    return original


def run_one(mutation: Mutation, timeout: float) -> tuple[bool, str, float]:
    """Apply, test, restore. Returns (caught, first failing test or why, seconds)."""
    begin = time.monotonic()
    original = apply(mutation)
    # pytest in a session of its own, so that a timeout takes its worker and server processes
    # with it (killing pytest alone left a worker spinning on after its server had gone)
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutation.tests],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = run.communicate(timeout=timeout)
        output = stdout + stderr
        failed = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.M)
        if run.returncode == 0:
            return False, "all selected tests passed", time.monotonic() - begin
        if run.returncode == 5:
            return False, "no test selected", time.monotonic() - begin
        return (
            True,
            failed.group(1) if failed else f"pytest exit {run.returncode}",
            (time.monotonic() - begin),
        )
    except subprocess.TimeoutExpired:
        return True, f"timed out after {timeout:.0f}s (a hang counts as caught)", timeout
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)  # whatever the run left behind
        run.wait()
        (ROOT / mutation.path).write_text(original)


def main() -> None:
    """Run every mutation (or those matching ``-k``) and print what was caught."""
    parser = argparse.ArgumentParser(prog="python -m tests.mutations", description=__doc__)
    parser.add_argument("-k", help="only mutations whose promise contains this text")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--report", type=Path, help="write the table as markdown here")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.k or args.k.lower() in m.promise.lower()]
    rows, begin = [], time.monotonic()
    for number, mutation in enumerate(chosen, 1):
        caught, why, seconds = run_one(mutation, args.timeout)
        verdict = "caught" if caught else "MISSED"
        print(f"{number:2}/{len(chosen)} {verdict:<6} {seconds:5.0f}s  {mutation.promise}\n"
              f"           {why}", flush=True)  # fmt: skip
        rows.append((mutation, caught, why, seconds))
    total = time.monotonic() - begin
    missed = [m for m, caught, _, _ in rows if not caught]
    print(f"\n{len(rows) - len(missed)}/{len(rows)} mutations caught in {total:.0f}s")
    if args.report:
        lines = [
            "## The curated list",
            "",
            f"`python -m tests.mutations` on {time.strftime('%Y-%m-%d')}: "
            f"{len(rows) - len(missed)}/{len(rows)} caught in {total:.0f} s.",
            "",
            "| promise broken | file | caught by | s |",
            "|---|---|---|---|",
            *(
                f"| {m.promise} | `{m.path}` | {'`' + why + '`' if caught else '**missed**'} "
                f"| {seconds:.0f} |"
                for m, caught, why, seconds in rows
            ),
        ]
        # the page's part above the list (the tool's score) stays as it is
        page = args.report.read_text() if args.report.exists() else ""
        head = page.split("## The curated list", 1)[0] if "## The curated list" in page else ""
        args.report.write_text(head + "\n".join(lines) + "\n")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
