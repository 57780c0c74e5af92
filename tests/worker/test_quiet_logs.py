"""An expected step failure is one line in the worker's log; a bug keeps its traceback.

The README's way — ``SagaloomPlugin()`` on a plain client, the SDK's worker, Python's own
``logging.basicConfig`` (not ``saga worker``'s log set-up) — against the demo participants: a
card declined (a 402 refusal), a payment service answering 500 until the step's retries are
spent, a service that is down (connection refused), and an activity with a bug. Each saga
compensates; the worker's log is read line by line.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from sagaloom.server import free_port
from tests._helpers import Stack

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys
    from datetime import timedelta

    from pydantic import BaseModel
    from temporalio import activity
    from temporalio.client import Client
    from temporalio.common import RetryPolicy
    from temporalio.worker import Worker

    from sagaloom import Activity, Http, Saga, Step, StepDefaults, saga_workflow
    from sagaloom.client import outcome, run, start_saga
    from sagaloom.worker import SagaloomPlugin

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


    class Order(BaseModel):
        order_id: str
        amount_cents: int = 1200
        pay_with: str = "payment"
        bug: bool = False


    @activity.defn(name="quiet.check")
    async def check(order_id: str) -> str:
        raise RuntimeError(f"a bug in the check of {order_id}")


    def skip_bug(c):
        return c.input.bug


    FAST = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3)
    QUIET = Saga(
        name="QuietSaga",
        input=Order,
        key=lambda o: o.order_id,
        defaults=StepDefaults(retry=FAST),
        breaker=False,
        steps=[
            Step(
                "reserve-stock",
                Http("inventory", "POST", "/reservations", body=lambda c: {
                    "order_id": c.input.order_id, "sku": "widget", "quantity": 1}),
                compensation=Http("inventory", "POST", "/reservations/release",
                                  body=lambda u: {"order_id": u.input.order_id}),
            ),
            Step("check", Activity(check, arg=lambda c: c.input.order_id), when=skip_bug),
            Step(
                "charge-payment",
                Http("payment", "POST", "/charges", body=lambda c: {
                    "order_id": c.input.order_id, "customer": "c-1",
                    "amount_cents": c.input.amount_cents}),
                compensation=Http("payment", "POST", "/charges/refund",
                                  body=lambda u: {"order_id": u.input.order_id}),
            ),
            Step(
                "charge-elsewhere",
                Http("dead", "POST", "/charges", body=lambda c: {"order_id": c.input.order_id}),
                when=lambda c: c.input.pay_with == "dead",
            ),
        ],
    )
    QuietSaga = saga_workflow(QUIET)


    async def main() -> None:
        client = await Client.connect(os.environ["TEMPORAL_ADDRESS"], plugins=[SagaloomPlugin()])
        queue = os.environ["QUEUE"]
        orders = json.loads(sys.argv[1])
        async with Worker(client, task_queue=queue, workflows=[QuietSaga], activities=[check]):
            handles = [await start_saga(client, QUIET, o, task_queue=queue) for o in orders]
            ended = {h.id: (await outcome(h)).status.value for h in handles}
        print(json.dumps(ended))


    if __name__ == "__main__":
        run(main())
    """
)
RECORD = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


async def test_a_compensated_saga_logs_one_line_per_expected_failure_and_a_bug_stays_loud(
    stack: Stack, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    ids = {what: f"quiet-{what}-{run}" for what in ("ok", "declined", "down", "dead", "bug")}
    orders = [
        {"order_id": ids["ok"]},
        {"order_id": ids["declined"], "amount_cents": 10_000_000},  # the payment's 402
        {"order_id": ids["down"]},  # the payment answers 500 to it, every time
        {"order_id": ids["dead"], "pay_with": "dead"},  # a service nobody listens on
        {"order_id": ids["bug"], "bug": True},  # an activity that raises: a bug
    ]
    await stack.fault("payment", op="do", match=ids["down"], mode="error", status=500)
    script = tmp_path / "quiet.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGALOOM_", "PYTHONPATH"))}
    env.update(
        TEMPORAL_ADDRESS=stack.address,
        QUEUE=f"quiet-{run}",
        SAGALOOM_SERVICE_INVENTORY=stack.services["inventory"],
        SAGALOOM_SERVICE_PAYMENT=stack.services["payment"],
        SAGALOOM_SERVICE_DEAD=f"http://127.0.0.1:{free_port()}",
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script), json.dumps(orders)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ended = json.loads(done.stdout.strip().splitlines()[-1])
    assert ended == {
        f"QuietSaga-{ids['ok']}": "COMPLETED",
        **{f"QuietSaga-{ids[w]}": "COMPENSATED" for w in ("declined", "down", "dead", "bug")},
    }

    # the log as records: a record is a line that starts like one, with what follows it
    records: list[list[str]] = []
    for line in done.stderr.splitlines():
        if RECORD.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    for record in records:
        assert RECORD.match(record[0]), f"not a log record: {record[0]!r}"
        if len(record) > 1:  # a traceback: only a bug may have one
            assert ids["bug"] in record[0], "\n".join(record)
    for what in ("declined", "down", "dead"):
        said = [r[0] for r in records if ids[what] in r[0] and not r[0].startswith("DEBUG")]
        # the saga's one line: which step failed for good, and why
        assert len(said) == 1, said
        assert re.search(r"step charge-(payment|elsewhere) failed for good: ", said[0]), said
    declined = next(r[0] for r in records if ids["declined"] in r[0])
    assert "HTTP 402" in declined and "card declined" in declined
    loud = [r for r in records if ids["bug"] in r[0] and len(r) > 1]
    assert loud and any("a bug in the check" in line for r in loud for line in r)
