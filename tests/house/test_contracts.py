"""Contracts, contract-first: committed under docs/contracts, regenerated and compared here.

A change to a saga that changes what participants see (a step, a subject, an input field) must
come with its regenerated contract: ``./run contract --out docs/contracts``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sagaloom import Saga
from sagaloom._cli._contract import asyncapi, mermaid
from sagaloom.worker import load_sagas
from tests._helpers import ROOT
from workers.config import ALL_SAGA_MODULES
from workflows.fulfilment import FULFILMENT
from workflows.order import ORDER
from workflows.transfer import TRANSFER
from workflows.trip import TRIP

COMMITTED = ROOT / "docs" / "contracts"
MODULES = ALL_SAGA_MODULES


def test_the_committed_contracts_match_the_sagas(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sagaloom", "contract", "--out", str(tmp_path)]
        + [arg for m in MODULES for arg in ("--module", m)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    committed = {
        p.name: p.read_text() for p in COMMITTED.iterdir() if p.suffix in (".json", ".mmd", ".svg")
    }
    assert sorted(fresh) == sorted(committed), "regenerate: ./run contract --out docs/contracts"
    for name, text in fresh.items():
        assert committed[name] == text, f"{name} drifted: ./run contract --out docs/contracts"


@pytest.mark.parametrize("saga", [ORDER, TRIP, TRANSFER, FULFILMENT], ids=lambda s: s.name)
def test_a_contract_states_input_steps_and_compensations(saga: Saga[Any]) -> None:
    document = json.loads((COMMITTED / f"{saga.name}.contract.json").read_text())
    assert [s["name"] for s in document["steps"]] == [s.name for s in saga.steps]
    for step, written in zip(saga.steps, document["steps"], strict=True):
        assert (written["compensation"] is None) == (step.compensation is None)
        if step.output is not None:
            assert written["output"] == step.output.model_json_schema()


def test_the_input_schema_is_what_the_client_checks() -> None:
    schema = json.loads((COMMITTED / "FulfilmentSaga.contract.json").read_text())["input"]
    jsonschema.validate({"order_id": "o-1", "sku": "gadget", "quantity": 3}, schema)
    with pytest.raises(jsonschema.ValidationError, match="quantity"):
        jsonschema.validate({"order_id": "o-1", "sku": "gadget"}, schema)


def test_the_asyncapi_document_names_every_broker_channel() -> None:
    document = asyncapi([ORDER, TRIP, TRANSFER, FULFILMENT])
    assert document["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in document["channels"].values()}
    assert {
        "sagaloom.cmd.warehouse.pack",
        "sagaloom.cmd.warehouse.unpack",
        "sagaloom.replies",
        "sagaloom.events.{saga}.{workflowId}",
        "sagaloom.dead.{kind}",
        "{subject}",
    } <= addresses
    triggers = [k for k in document["channels"] if k.startswith("trigger_")]
    assert sorted(triggers) == [
        "trigger_FulfilmentSaga",
        "trigger_OrderSaga",
        "trigger_TransferSaga",
        "trigger_TripSaga",
    ]
    # every reference resolves
    for operation in document["operations"].values():
        name = operation["channel"]["$ref"].rsplit("/", 1)[1]
        assert name in document["channels"]
        for message in document["channels"][name]["messages"].values():
            assert message["$ref"].rsplit("/", 1)[1] in document["components"]["messages"]
    pack = document["components"]["messages"]["FulfilmentSaga_pack"]
    assert set(pack["headers"]["required"]) == {
        "Nats-Msg-Id",
        "Idempotency-Key",
        "Sagaloom-Correlation-Id",
        "Sagaloom-Reply-Token",
        "Sagaloom-Reply-To",
    }


def test_the_diagram_shows_each_step_and_its_compensation() -> None:
    diagram = mermaid(ORDER)
    assert diagram.startswith("flowchart LR")
    for step in ORDER.steps:
        assert f'["<b>{step.name}</b><br/>' in diagram
        assert f'["<b>undo {step.name}</b><br/>' in diagram
    assert diagram.count("-. undone by .->") == 3
    assert "s0 --> s1" in diagram and "s1 --> s2" in diagram


def test_the_run_script_names_every_example_saga(tmp_path: Path) -> None:
    """``./run contract`` (and ``./run start``) know every saga workers/config.py lists."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGALOOM_")}
    done = subprocess.run(
        ["bash", str(ROOT / "run"), "contract", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = set(load_sagas(ALL_SAGA_MODULES))
    assert "ItinerarySaga" in names and "FulfilmentSaga" in names
    assert {p.name.split(".")[0] for p in tmp_path.glob("*.mmd")} == names
