"""Replay tests: recorded histories of the example sagas must replay on the current code.

A change that would break sagas already running (a step inserted, removed or reordered without
a patch) fails here, in CI, before it reaches a worker. Histories: ``tests/histories``, recorded
by ``python -m tests.record_histories``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from sagaloom.converter import DATA_CONVERTER
from sagaloom.worker import SagaloomPlugin
from tests import _changed_patched, _changed_unpatched
from tests._chaos_sagas import ChaosNestedSaga, ChaosTripSaga
from tests._sagas import NestingSaga, Rules2Saga
from workflows.order import OrderSaga
from workflows.trip import TripSaga

FOLDER = Path(__file__).parent / "histories"
WORKFLOW_IDS: dict[str, str] = json.loads((FOLDER / "workflow-ids.json").read_text())
HISTORIES = sorted(p for p in FOLDER.glob("*.json") if p.stem in WORKFLOW_IDS)


def load(path: Path) -> WorkflowHistory:
    # Replay under the run's own workflow id: idempotency keys and reply correlation ids use it.
    return WorkflowHistory.from_json(WORKFLOW_IDS[path.stem], path.read_text())


def test_every_kind_of_run_is_recorded() -> None:
    assert {p.stem for p in HISTORIES} == {
        "order-completed",
        "order-compensated",
        "order-parked-resolved",
        "trip-completed",
        "trip-compensated",
        "trip-cancelled",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_histories_replay_on_the_current_code(path: Path) -> None:
    replayer = Replayer(workflows=[OrderSaga, TripSaga], data_converter=DATA_CONVERTER)
    await replayer.replay_workflow(load(path))


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_histories_replay_with_the_plugin_alone(path: Path) -> None:
    """A team's own replay tests need only the plugin: converter and sandbox come with it."""
    replayer = Replayer(workflows=[OrderSaga, TripSaga], plugins=[SagaloomPlugin()])
    await replayer.replay_workflow(load(path))


NESTING_IDS: dict[str, str] = json.loads((FOLDER / "nesting-ids.json").read_text())


@pytest.mark.parametrize("name", sorted(NESTING_IDS))
async def test_nested_sagas_started_before_the_signal_rename_replay(name: str) -> None:
    """Parent and child histories recorded with the old ``parent``/``child_done`` signals."""
    history = (FOLDER / f"{name}.json").read_text()
    assert '"signalName": "child_done"' in history  # recorded before the rename
    replayer = Replayer(workflows=[NestingSaga, Rules2Saga], plugins=[SagaloomPlugin()])
    await replayer.replay_workflow(WorkflowHistory.from_json(NESTING_IDS[name], history))


@pytest.mark.parametrize("name", ["order-completed", "order-compensated", "order-parked-resolved"])
async def test_inserting_a_step_without_a_patch_breaks_running_sagas(name: str) -> None:
    replayer = Replayer(workflows=[_changed_unpatched.OrderSaga], data_converter=DATA_CONVERTER)
    path = next(p for p in HISTORIES if p.stem == name)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(load(path))


@pytest.mark.parametrize("name", ["order-completed", "order-compensated", "order-parked-resolved"])
async def test_inserting_a_step_with_a_patch_keeps_running_sagas_replaying(name: str) -> None:
    replayer = Replayer(workflows=[_changed_patched.OrderSaga], data_converter=DATA_CONVERTER)
    path = next(p for p in HISTORIES if p.stem == name)
    await replayer.replay_workflow(load(path))


STUCK = {
    "stuck-nested-cancel": "ChaosNestedSaga-b3c4a7-29",
    "stuck-nested-cancel-child": "ChaosNestedSaga-b3c4a7-29:trip",
}
"""The chaos run's hung parent and child (../shared/evidence), recorded before the fix."""


@pytest.mark.parametrize("name", sorted(STUCK))
async def test_the_nested_sagas_that_hung_on_cancel_replay_on_the_fixed_code(name: str) -> None:
    """The fix is patched (``sagaloom-nested-cancel``): runs recorded before it replay as run."""
    history = (FOLDER / f"{name}.json").read_text()
    replayer = Replayer(workflows=[ChaosNestedSaga, ChaosTripSaga], plugins=[SagaloomPlugin()])
    await replayer.replay_workflow(WorkflowHistory.from_json(STUCK[name], history))


@pytest.mark.parametrize(
    ("name", "workflow_id"),
    [("breaker-waited", "OutageSaga-7a583c-0"), ("breaker-service", "sagaloom-breaker:outage")],
)
async def test_a_saga_that_waited_for_a_breaker_and_the_breaker_replay(
    name: str, workflow_id: str
) -> None:
    """Recorded by ``SAGALOOM_RECORD_HISTORIES=1 pytest tests/test_breaker.py -k long_outage``."""
    from tests._outage_sagas import SAGAS

    history = WorkflowHistory.from_json(workflow_id, (FOLDER / f"{name}.json").read_text())
    replayer = Replayer(workflows=SAGAS, plugins=[SagaloomPlugin(services={})])  # + the breaker
    await replayer.replay_workflow(history)


@pytest.mark.parametrize(
    ("name", "workflow_id"),
    [
        ("exclusive-holder", "ExclusiveTransferSaga-dcb5ef-1"),
        ("exclusive-waited", "ExclusiveTransferSaga-dcb5ef-2"),
        ("exclusive-key-lock", "sagaloom-key:account:acc-dcb5ef"),
    ],
)
async def test_sagas_and_a_lock_from_before_the_key_shards_replay(
    name: str, workflow_id: str
) -> None:
    """Two transfers on one account (the second waited) and the account's per-key lock,
    recorded before exclusive keys moved to key shards (patch ``sagaloom-exclusive`` only):
    they replay, and sagas that ran then keep asking a lock per key."""
    from tests._exclusive_sagas import SAGAS

    history = WorkflowHistory.from_json(workflow_id, (FOLDER / f"{name}.json").read_text())
    replayer = Replayer(workflows=SAGAS, plugins=[SagaloomPlugin(services={})])  # + the locks
    await replayer.replay_workflow(history)


FANOUT_IDS: dict[str, str] = json.loads((FOLDER / "fanout-ids.json").read_text())


@pytest.mark.parametrize("name", sorted(FANOUT_IDS))
async def test_fan_out_sagas_and_their_batches_replay(name: str) -> None:
    """A tolerant fan-out, a compensated one and one of its batches (``record_fanout``)."""
    from tests._fanout_sagas import FAN_SAGAS

    history = WorkflowHistory.from_json(FANOUT_IDS[name], (FOLDER / f"{name}.json").read_text())
    replayer = Replayer(workflows=FAN_SAGAS, plugins=[SagaloomPlugin(services={})])  # + batches
    await replayer.replay_workflow(history)


BROKER_IDS: dict[str, str] = json.loads((FOLDER / "broker-ids.json").read_text())


@pytest.mark.parametrize("name", sorted(BROKER_IDS))
async def test_broker_sagas_before_and_since_the_ask_replay(name: str) -> None:
    """Fulfilments over NATS commands, recorded by ``tests/test_broker.py`` (``keep_history``):
    ``broker-update-*`` on the code before the ask (every reply through the update), which
    sagas then running keep, and ``broker-ask-*`` since (a reply completes its ask)."""
    from tests._broker_sagas import QuickPackSaga, QuickUndoSaga
    from workflows.fulfilment import FulfilmentSaga

    history = WorkflowHistory.from_json(BROKER_IDS[name], (FOLDER / f"{name}.json").read_text())
    replayer = Replayer(
        workflows=[FulfilmentSaga, QuickPackSaga, QuickUndoSaga],
        plugins=[SagaloomPlugin(services={})],
    )
    await replayer.replay_workflow(history)


HOLD_IDS: dict[str, str] = json.loads((FOLDER / "hold-ids.json").read_text())


@pytest.mark.parametrize("name", sorted(HOLD_IDS))
async def test_held_and_redriven_sagas_replay(name: str) -> None:
    """Sagas held for an operator and redriven (the same key, or a new one after a refusal),
    redriven with a corrected input and a request patch, marked done, compensated, past their
    deadline, cancelled while held — recorded by ``tests/test_hold.py`` (``keep``)."""
    from tests._hold_sagas import HOLD_SAGAS

    history = WorkflowHistory.from_json(HOLD_IDS[name], (FOLDER / f"{name}.json").read_text())
    replayer = Replayer(workflows=HOLD_SAGAS, plugins=[SagaloomPlugin(services={})])
    await replayer.replay_workflow(history)
