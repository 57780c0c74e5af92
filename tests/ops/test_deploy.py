"""deploy/ validated offline: schemas, linters, and agreement with the worker's configuration.

No container engine or cluster runs here: Kubernetes objects are checked against their
schemas (kubernetes-validate --strict), KEDA's ScaledObject field by field, the compose file
against the compose spec, YAML by yamllint, the Dockerfile by hadolint; then this test checks
that manifests, compose file and worker agree on variable names, ports and the task queue.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sagaloom import SEARCH_ATTRIBUTES
from sagaloom._cli import CLI_ENV
from sagaloom.server import temporal_cli
from sagaloom.worker import WorkerConfig, load_sagas
from sagaloom.worker._run import check_services
from workers.config import APP_ENV

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent
# Read by the SDK's standard environment configuration (TLS, mTLS, API keys).
TEMPORAL_ENV = {
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
}


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kind(name: str) -> dict[str, Any]:
    for path in K8S.rglob("*.yaml"):
        for doc in docs(path):
            if doc.get("kind") == name:
                return doc
    raise AssertionError(f"no {name} in deploy/k8s")


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_core_kubernetes_objects_pass_strict_schema_validation() -> None:
    files = [
        str(p)
        for p in K8S.rglob("*.yaml")
        if p.name not in ("kustomization.yaml", "scaledobject.yaml")
    ]
    result = run(str(BIN / "kubernetes-validate"), "--strict", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") >= 9


def test_keda_scaled_object_uses_the_temporal_trigger_correctly() -> None:
    scaled = kind("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert set(spec) <= {
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "cooldownPeriod",
        "pollingInterval",
        "triggers",
        "advanced",
        "fallback",
    }
    assert spec["scaleTargetRef"]["name"] == kind("Deployment")["metadata"]["name"]
    assert 0 < spec["minReplicaCount"] <= spec["maxReplicaCount"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "temporal"
    meta = trigger["metadata"]
    assert {"endpoint", "namespace", "taskQueue", "targetQueueSize"} <= set(meta)
    assert set(meta) <= {
        "endpoint",
        "namespace",
        "taskQueue",
        "targetQueueSize",
        "activationTargetQueueSize",
        "queueTypes",
        "buildId",
        "minConnectTimeout",
        "unsafeSsl",
        "tlsServerName",
        "apiKey",
    }
    assert all(isinstance(v, str) for v in meta.values())  # KEDA metadata is string-valued
    assert int(meta["targetQueueSize"]) > 0
    assert set(meta["queueTypes"].split(",")) <= {"workflow", "activity", "nexus"}


def test_compose_file_matches_the_compose_spec() -> None:
    result = run(
        str(BIN / "check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        str(DEPLOY / "compose.yaml"),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_yaml_is_lint_clean() -> None:
    config = "{extends: default, rules: {line-length: {max: 120}, document-start: disable}}"
    result = run(str(BIN / "yamllint"), "-s", "-d", config, str(DEPLOY))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_lint_clean() -> None:
    result = run(str(BIN / "hadolint"), "--ignore", "DL3008", str(DEPLOY / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr


def known(name: str) -> bool:
    return (
        name in WorkerConfig().to_env()
        or name in TEMPORAL_ENV
        or name in CLI_ENV
        or (name.startswith("SAGALOOM_SERVICE_") and name.isupper())
        or name in APP_ENV
    )


def test_manifests_compose_and_worker_agree_on_names_ports_and_queue() -> None:
    config_map = kind("ConfigMap")["data"]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    worker_env = compose["worker"]["environment"]
    for name in [*config_map, *worker_env]:
        assert known(name), f"{name} is not a variable the worker reads"
    # Every value parses into a valid configuration, and the sagas named find their services
    # (a worker refuses to start otherwise).
    for env in (config_map, worker_env):
        config = WorkerConfig.from_env(env)
        assert config.saga_modules
        check_services(load_sagas(config.saga_modules).values(), config.services)

    # Task queue, namespace and endpoint: the ConfigMap, KEDA and compose agree.
    meta = kind("ScaledObject")["spec"]["triggers"][0]["metadata"]
    assert (
        meta["taskQueue"] == config_map["SAGALOOM_TASK_QUEUE"] == worker_env["SAGALOOM_TASK_QUEUE"]
    )
    assert meta["namespace"] == config_map["TEMPORAL_NAMESPACE"]
    assert meta["endpoint"] == config_map["TEMPORAL_ADDRESS"]

    # Ports: health and metrics addresses, container ports, probes, service, image, Prometheus.
    health = int(config_map["SAGALOOM_HEALTH_ADDRESS"].rsplit(":", 1)[1])
    metrics = int(config_map["SAGALOOM_METRICS_ADDRESS"].rsplit(":", 1)[1])
    pod = kind("Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": health, "metrics": metrics}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert kind("Service")["spec"]["ports"][0]["port"] == metrics
    assert worker_env["SAGALOOM_HEALTH_ADDRESS"].endswith(f":{health}")
    assert worker_env["SAGALOOM_METRICS_ADDRESS"].endswith(f":{metrics}")
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"EXPOSE {health} {metrics}" in dockerfile
    assert 'ENTRYPOINT ["saga", "worker"]' in dockerfile
    # The image runs the demo participants too: it installs the extras they import.
    extras = re.search(r"pip install [^\n]*'\.\[([a-z,]+)\]'", dockerfile)
    assert extras is not None
    assert {"tracing", "demo"} <= set(extras.group(1).split(","))
    assert f"port: {metrics}" in (DEPLOY / "prometheus" / "prometheus.yml").read_text()

    # Shutdown: the orchestrators wait longer than the worker's graceful shutdown.
    grace = int(config_map["SAGALOOM_GRACEFUL_SHUTDOWN_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > grace
    assert int(compose["worker"]["stop_grace_period"].rstrip("s")) > grace

    # The demo participants' ports in compose are the ones the services bind.
    command = compose["participants"]["command"]
    base = int(command[command.index("--base-port") + 1])
    # The warehouse answers over the same broker the workers use.
    assert command[command.index("--nats") + 1] == worker_env["SAGALOOM_NATS_URL"]
    assert compose["nats"]["command"][:3] == ["--jetstream", "--store_dir", "/data"]
    assert config_map["SAGALOOM_NATS_URL"].startswith("nats://")
    urls = {k: v for k, v in worker_env.items() if k.startswith("SAGALOOM_SERVICE_")}
    from services import CATALOG

    assert urls == {
        f"SAGALOOM_SERVICE_{spec.name.upper()}": f"http://participants:{base + i}"
        for i, spec in enumerate(CATALOG)
    }


@pytest.mark.parametrize("where", ["job", "compose"])
def test_the_search_attributes_registered_are_the_ones_the_runtime_writes(where: str) -> None:
    text = (
        (K8S / "search-attributes-job.yaml") if where == "job" else (DEPLOY / "compose.yaml")
    ).read_text()
    line = next(ln for ln in text.splitlines() if "for sa in" in ln)
    names = line.split("for sa in", 1)[1].split(";", 1)[0].split()
    assert names == [key.name for key in SEARCH_ATTRIBUTES]
    assert "--type Keyword" in text


def dev_server_versions() -> dict[str, str]:
    """Server and UI versions of the dev server the tests run on (``temporal --version``)."""
    out = run(temporal_cli(), "--version").stdout  # "... (Server 1.32.0, UI 2.54.1)"
    inside = out.split("(", 1)[1].split(")", 1)[0]
    return dict(part.strip().split(" ", 1) for part in inside.split(","))


def images(text: str) -> dict[str, str]:
    """``temporalio/<name>`` image tags named in a YAML file's text."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if "temporalio/" in line and "image:" in line:
            name, tag = line.split("temporalio/", 1)[1].strip().split(":", 1)
            found[name] = tag
    return found


def test_current_temporal_images_at_the_dev_servers_versions() -> None:
    versions = dev_server_versions()
    compose = (DEPLOY / "compose.yaml").read_text()
    for path in DEPLOY.rglob("*.yaml"):
        code = "\n".join(
            ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")
        )
        assert "auto-setup" not in code, f"{path}: temporalio/auto-setup is deprecated"
        assert "tctl" not in code, f"{path}: tctl is end-of-life; use the temporal CLI"
    assert images(compose) == {
        "admin-tools": versions["Server"],
        "server": versions["Server"],
        "ui": versions["UI"],
    }
    assert images((K8S / "search-attributes-job.yaml").read_text()) == {
        "admin-tools": versions["Server"]
    }
    helm = yaml.safe_load((DEPLOY / "helm" / "temporal-values.yaml").read_text())
    assert helm["server"]["image"] == {"repository": "temporalio/server", "tag": versions["Server"]}
    assert helm["admintools"]["image"]["tag"] == versions["Server"]
    assert helm["web"]["image"] == {"repository": "temporalio/ui", "tag": versions["UI"]}
    assert all(helm["schema"][job]["enabled"] for job in ("createDatabase", "setup", "update"))


def test_compose_sets_up_the_schema_then_the_server_then_namespace_and_attributes() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]

    def after(name: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in services[name]["depends_on"].items()}

    # Schema: both databases created, set up and updated to this version's schema.
    schema = " ".join(services["temporal-schema"]["command"])
    for step in ("create-database", "setup-schema -v 0.0", "update-schema -d"):
        assert step in schema
    assert "temporal:temporal temporal_visibility:visibility" in schema
    assert "/etc/temporal/schema/postgresql/v12/" in schema
    env = services["temporal-schema"]["environment"]
    server = services["temporal"]["environment"]
    assert env["SQL_PLUGIN"] == server["DB"] == "postgres12"
    assert env["SQL_HOST"] == server["POSTGRES_SEEDS"] == "postgresql"
    assert env["SQL_USER"] == server["POSTGRES_USER"]
    assert env["SQL_PASSWORD"] == server["POSTGRES_PWD"]
    assert server["VISIBILITY_DBNAME"] == "temporal_visibility" and server["DBNAME"] == "temporal"
    # Order: database healthy -> schema done -> server -> health + namespace + attributes done
    # -> UI and workers.
    assert after("temporal-schema") == {"postgresql": "service_healthy"}
    assert after("temporal") == {"temporal-schema": "service_completed_successfully"}
    setup = " ".join(services["temporal-setup"]["command"])
    assert setup.startswith("until temporal operator cluster health;")
    assert "temporal operator namespace create --namespace default" in setup
    assert services["temporal-setup"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert after("temporal-ui")["temporal-setup"] == "service_completed_successfully"
    assert after("worker")["temporal-setup"] == "service_completed_successfully"
    assert services["worker"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
