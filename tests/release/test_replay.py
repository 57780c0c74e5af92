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

FOLDER = Path(__file__).resolve().parents[1] / "histories"
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
async def test_nested_sagas_and_their_children_replay(name: str) -> None:
    """A parent and its child saga, completed and compensated (``record_nesting``)."""
    history = (FOLDER / f"{name}.json").read_text()
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


BREAKER_IDS: dict[str, str] = json.loads((FOLDER / "breaker-ids.json").read_text())


@pytest.mark.parametrize("name", sorted(BREAKER_IDS))
async def test_a_saga_that_waited_for_a_breaker_and_the_breaker_replay(name: str) -> None:
    """Recorded by ``SAGALOOM_RECORD_HISTORIES=1 pytest tests/outages/test_breaker.py -k
    long_outage``."""
    from tests._outage_sagas import SAGAS

    history = WorkflowHistory.from_json(BREAKER_IDS[name], (FOLDER / f"{name}.json").read_text())
    replayer = Replayer(workflows=SAGAS, plugins=[SagaloomPlugin(services={})])  # + the breaker
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
async def test_broker_sagas_replay(name: str) -> None:
    """Fulfilments over NATS commands, recorded by ``tests/broker/test_broker.py``
    (``keep_history``): completed, compensated, answered by hand, an undo command sent again
    until answered."""
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
    deadline, cancelled while held — recorded by ``tests/runtime/test_hold.py`` (``keep``)."""
    from tests._hold_sagas import HOLD_SAGAS

    history = WorkflowHistory.from_json(HOLD_IDS[name], (FOLDER / f"{name}.json").read_text())
    replayer = Replayer(workflows=HOLD_SAGAS, plugins=[SagaloomPlugin(services={})])
    await replayer.replay_workflow(history)


# -- the release line (docs/upgrading.md) ------------------------------------------------------

PRE = FOLDER / "pre-0.1"
"""Histories of runs that development builds started before 0.1.0, whose branches 0.1.0 dropped
(``pre-0.1/ids.json``: each one's workflow id and the sagas it needs)."""
PRE_IDS: dict[str, dict[str, str]] = json.loads((PRE / "ids.json").read_text())


def _sagas(group: str) -> list[type]:
    from tests import _exclusive_sagas, _fanout_sagas, _hold_sagas, _outage_sagas
    from tests._broker_sagas import QuickPackSaga, QuickUndoSaga
    from workflows.fulfilment import FulfilmentSaga

    return {
        "examples": [OrderSaga, TripSaga],
        "nesting": [NestingSaga, Rules2Saga],
        "chaos": [ChaosNestedSaga, ChaosTripSaga],
        "outage": list(_outage_sagas.SAGAS),
        "exclusive": list(_exclusive_sagas.SAGAS),
        "fanout": list(_fanout_sagas.FAN_SAGAS),
        "broker": [FulfilmentSaga, QuickPackSaga, QuickUndoSaga],
        "hold": list(_hold_sagas.HOLD_SAGAS),
    }[group]


@pytest.mark.parametrize(
    "name", sorted(n for n in PRE_IDS if n not in ("fanout-batch", "exclusive-key-lock"))
)
async def test_a_run_of_a_dropped_line_fails_loudly_naming_the_release_to_run(name: str) -> None:
    """docs/upgrading.md: a worker never replays a run of a line it dropped on the wrong
    branches; its workflow task fails with a message naming the run and the release that can
    replay it (the run itself is not failed: it waits for such a worker)."""
    entry = PRE_IDS[name]
    history = WorkflowHistory.from_json(entry["workflow_id"], (PRE / f"{name}.json").read_text())
    replayer = Replayer(workflows=_sagas(entry["sagas"]), plugins=[SagaloomPlugin(services={})])
    with pytest.raises(Exception) as failed:
        await replayer.replay_workflow(history)
    assert not isinstance(failed.value, NondeterminismError)  # not a silent or a vague failure
    message = str(failed.value)
    assert f"run {entry['workflow_id']} was started by sagaloom pre-0.1.0" in message
    assert "run it to its end on a worker of sagaloom pre-0.1.0" in message


async def test_a_per_key_lock_of_a_development_build_is_no_workflow_of_0_1() -> None:
    """The per-key lock (before the key shards) is gone: its run fails loudly, unregistered."""
    entry = PRE_IDS["exclusive-key-lock"]
    history = WorkflowHistory.from_json(
        entry["workflow_id"], (PRE / "exclusive-key-lock.json").read_text()
    )
    replayer = Replayer(workflows=_sagas("exclusive"), plugins=[SagaloomPlugin(services={})])
    with pytest.raises(Exception, match="SagaloomKeyLock is not registered"):
        await replayer.replay_workflow(history)


def _markers(path: Path) -> list[str]:
    """The patch ids a history's markers record, in order."""
    import base64

    events = json.loads(path.read_text())["events"]
    ids = []
    for event in events:
        if event["eventType"] != "EVENT_TYPE_MARKER_RECORDED":
            continue
        attrs = event["markerRecordedEventAttributes"]
        if attrs["markerName"] == "core_patch":
            data = attrs["details"]["patch-data"]["payloads"][0]["data"]
            ids.append(json.loads(base64.b64decode(data))["id"])
    return ids


@pytest.mark.parametrize(
    "path", sorted(p for p in FOLDER.glob("*.json") if not p.stem.endswith("-ids")),
    ids=lambda p: p.stem,
)  # fmt: skip
def test_every_run_of_0_1_records_its_line_once_and_no_other_engine_patch(path: Path) -> None:
    """docs/upgrading.md: a run records the line it follows (``sagaloom-line-1``), once; the
    first release carries no engine patch of its own (fan-out batches carry no branch)."""
    markers = [m for m in _markers(path) if m.startswith("sagaloom-")]
    if path.stem == "fanout-batch":
        assert markers == []
    else:
        assert markers == ["sagaloom-line-1"]


async def test_a_later_build_of_the_same_line_replays_a_run_that_wrote_its_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A child saga (started without search attributes) writes ``SagaloomVersion`` itself; a
    worker of a later release on the same line writes another value there, and still replays."""
    import sagaloom._runtime._workflow as runtime

    history = (FOLDER / "nesting-completed-child.json").read_text()
    assert "SagaloomVersion" in history  # the child wrote it
    monkeypatch.setattr(runtime, "VERSION", "0.1.99")
    replayer = Replayer(workflows=[NestingSaga, Rules2Saga], plugins=[SagaloomPlugin()])
    await replayer.replay_workflow(
        WorkflowHistory.from_json(NESTING_IDS["nesting-completed-child"], history)
    )
