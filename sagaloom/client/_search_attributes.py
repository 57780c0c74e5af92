"""Registering sagaloom's search attributes on a namespace (the dev server, a cluster, a worker)."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client

from sagaloom._wire._names import SEARCH_ATTRIBUTES

__all__ = ["ensure_search_attributes"]


async def ensure_search_attributes(client: Client, namespace: str = "default") -> list[str]:
    """Register sagaloom's search attributes on ``namespace`` where missing.

    Returns:
        The names that were added (empty when all were there).
    """
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for key in SEARCH_ATTRIBUTES
        if key.name not in listed.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)
