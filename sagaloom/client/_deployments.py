"""Worker Versioning for operators: make a build the current one of its worker deployment."""

from __future__ import annotations

import asyncio
import time

from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

__all__ = ["set_current_build"]


async def set_current_build(
    client: Client, deployment: str, build_id: str, *, within: float = 30.0
) -> None:
    """Route new sagas (and auto-upgrade ones) to ``build_id``; pinned ones stay where they are.

    Sagas started before keep running on their own build (pinned, the default), so keep that
    build's workers up until ``saga list`` shows none of its sagas running. The build must have
    polled once: this waits up to ``within`` seconds for its workers to be seen.

    Raises:
        RPCError: the server refused (for example Worker Versioning disabled), or the build's
            workers were not seen in time.
    """
    request = SetWorkerDeploymentCurrentVersionRequest(
        namespace=client.namespace,
        deployment_name=deployment,
        build_id=build_id,
        identity=client.identity,
    )
    deadline = time.monotonic() + within
    while True:
        try:
            await client.workflow_service.set_worker_deployment_current_version(request)
            return
        except RPCError as err:
            unknown = err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION)
            if not unknown or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)
