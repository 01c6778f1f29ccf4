"""Fixtures of the integration tests: bootstrap tokens, kubelets stopped and their Nodes removed."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

import pytest
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, Secret

from wmco_sandbox.winhost import kubelet


@pytest.fixture
async def token(kube: AsyncClient) -> AsyncIterator[str]:
    token_id, secret = secrets.token_hex(3), secrets.token_hex(8)
    name = f"bootstrap-token-{token_id}"
    await kube.create(
        Secret(
            metadata=ObjectMeta(name=name, namespace="kube-system"),
            type="bootstrap.kubernetes.io/token",
            stringData={
                "token-id": token_id,
                "token-secret": secret,
                "usage-bootstrap-authentication": "true",
                "usage-bootstrap-signing": "true",
                "auth-extra-groups": "system:bootstrappers:worker",
            },
        )
    )
    try:
        yield f"{token_id}.{secret}"
    finally:
        await kube.delete(Secret, name, namespace="kube-system")


@pytest.fixture
async def cleanup(kube: AsyncClient) -> AsyncIterator[list[kubelet.SimulatedKubelet]]:
    """Stop every kubelet a test started and delete its Node and Lease."""
    started: list[kubelet.SimulatedKubelet] = []
    yield started
    for k in started:
        await k.stop()
        if k.node_name:
            with contextlib.suppress(ApiError):
                await kube.delete(Node, k.node_name)
            with contextlib.suppress(ApiError):
                await kube.delete(Lease, k.node_name, namespace="kube-node-lease")
