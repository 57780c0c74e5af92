"""The incident run: a bad deploy answers 500, held sagas, one bulk redrive — under chaos.

``python -m tests.incident_run --sagas 60 --bug-seconds 60 --bug-rate 0.3`` (by hand; the
figures go to docs/chaos.md). The payment participant answers 500 to a share (``--bug-rate``)
of its charges for ``--bug-seconds`` while order sagas with ``on_failure="hold"`` (two attempts
a step) start throughout; workers are SIGKILLed every ``--kill-every`` seconds and the Temporal
server every ``--server-every`` kills, as in the chaos run. Then the fix is deployed (the fault
goes), every saga is waited for until it ended or holds, and one bulk redrive (``--rate`` a
second, a checkpoint file; resumed when the server's death interrupts it) redrives the held
ones. Checked from the participants' stores (``tests.chaos.check``): every saga completed (none
compensated for the bug), every effect applied once, every call under its step's own key.
Exits 1 on any violation or unexpected outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
from temporalio.service import RPCError

from sagaloom import SagaState, SagaStatus
from sagaloom.client import act_on_held, connect
from tests._chaos_sagas import CHAOS_HOLD_ORDER
from tests.chaos import Harness, Plan, check, settle, start

HELD_QUERY = f"SagaName = '{CHAOS_HOLD_ORDER.name}'"


async def _status(handle: object) -> SagaStatus | None:
    try:
        state: SagaState = await handle.query(  # type: ignore[attr-defined]
            "saga_state", result_type=SagaState
        )
        return state.status
    except RPCError:
        return None


async def run(args: argparse.Namespace, tmp: Path) -> int:
    harness = Harness(tmp, args.seed)
    await harness.server.start()
    harness.start_services()
    harness.workers = [harness.start_worker(slot) for slot in range(2)]
    client = await connect(harness.server.address)
    await harness.wait_until_polling(client)
    payment = harness.urls["payment"]
    async with httpx.AsyncClient(timeout=30) as http:
        bug = {"op": "do", "match": "*", "mode": "error", "status": 500, "rate": args.bug_rate}
        (await http.post(f"{payment}/_admin/faults", json=bug)).raise_for_status()
    stop = asyncio.Event()
    chaos = asyncio.create_task(harness.chaos(stop, args.kill_every, args.server_every, 0))
    batch = f"inc{int(time.time()) % 100000}"
    plans = [
        Plan(CHAOS_HOLD_ORDER, {"order_id": f"{batch}-{n}", "customer": "chaos", "sku": "widget",
                                "quantity": 1, "amount_cents": 1_000, "country": "NL"},
             SagaStatus.COMPLETED, None)
        for n in range(args.sagas)
    ]  # fmt: skip
    began = time.monotonic()
    handles = []
    for n, plan in enumerate(plans):  # spread over the bug's window
        await asyncio.sleep(max(0.0, began + n * args.bug_seconds / args.sagas - time.monotonic()))
        handles.append(await start(client, plan))
    await asyncio.sleep(max(0.0, began + args.bug_seconds - time.monotonic()))
    async with httpx.AsyncClient(timeout=30) as http:  # the fix is deployed
        (await http.delete(f"{payment}/_admin/faults")).raise_for_status()
    fixed = time.monotonic()
    print(f"bug window over ({args.bug_seconds:.0f} s); waiting for each saga to end or hold")
    deadline = fixed + args.settle_seconds
    waiting = list(handles)
    while waiting and time.monotonic() < deadline:
        statuses = await asyncio.gather(*(_status(h) for h in waiting))
        settled = (SagaStatus.HELD, SagaStatus.COMPLETED, SagaStatus.COMPENSATED)
        waiting = [h for h, s in zip(waiting, statuses, strict=True) if s not in settled]
        await asyncio.sleep(1)
    held = sum(s is SagaStatus.HELD for s in await asyncio.gather(*(_status(h) for h in handles)))
    print(f"{held} saga(s) held; one bulk redrive (resumed after a server kill if need be)")
    checkpoint, acted, runs = tmp / "redrive.log", 0, 0
    while runs < 20:
        runs += 1
        try:
            summary = await act_on_held(
                client, "redrive", HELD_QUERY, per_second=args.rate, checkpoint=checkpoint,
                note="incident run: fixed",
            )  # fmt: skip
        except RPCError as err:  # the server was killed meanwhile: resume with the checkpoint
            print(f"  bulk redrive interrupted ({err.message[:80]}); resuming")
            await asyncio.sleep(2)
            continue
        acted += summary.acted
        if summary.matched == 0 or (summary.acted == 0 and not summary.refused):
            break
    results = await asyncio.gather(*(settle(h, p, args.settle_seconds)
                                     for h, p in zip(handles, plans, strict=True)))  # fmt: skip
    stop.set()
    await chaos
    await check(harness, client, handles, plans, list(results))
    report = harness.report
    compensated = report.outcomes.get("COMPENSATED", 0)
    print(
        f"{args.sagas} sagas; {held} held by the bug, {acted} redriven in {runs} bulk run(s); "
        f"outcomes {report.outcomes}; compensated: {compensated}; worker kills {report.kills}, "
        f"server kills {report.server_kills}; keys checked {report.keys_checked}; "
        f"{time.monotonic() - began:.0f} s"
    )
    for problem in [*report.violations, *report.unexpected, *report.stuck]:
        print(f"  {problem}")
    harness.stop()
    ok = not report.violations and not report.unexpected and not report.stuck
    return 0 if ok and compensated == 0 and held > 0 else 1


def main() -> None:
    """Run it; exit 1 on any violation."""
    parser = argparse.ArgumentParser(prog="python -m tests.incident_run", description=__doc__)
    parser.add_argument("--sagas", type=int, default=60)
    parser.add_argument("--bug-seconds", type=float, default=60)
    parser.add_argument("--bug-rate", type=float, default=0.3)
    parser.add_argument("--kill-every", type=float, default=3.0)
    parser.add_argument("--server-every", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0, help="redrives a second")
    parser.add_argument("--settle-seconds", type=float, default=240)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(asyncio.run(run(args, Path(tmp))))


if __name__ == "__main__":
    main()
