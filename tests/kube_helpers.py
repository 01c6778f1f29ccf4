"""Helpers shared by the tests that talk to the real control plane."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import RoleRef, Subject
from lightkube.resources.core_v1 import Secret
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 60, poll: float = 0.2
) -> T:
    """Poll ``check()`` until it returns something truthy and return that, or fail the test
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(poll)


def bootstrap_token_secret(token_id: str, token_secret: str, extra_group: str) -> Secret:
    """A kubeadm-style bootstrap token Secret in ``kube-system`` (authentication only)."""
    return Secret(
        metadata=ObjectMeta(name=f"bootstrap-token-{token_id}", namespace="kube-system"),
        type="bootstrap.kubernetes.io/token",
        stringData={
            "token-id": token_id,
            "token-secret": token_secret,
            "usage-bootstrap-authentication": "true",
            "auth-extra-groups": extra_group,
        },
    )


def node_bootstrapper_binding(namespace: str) -> ClusterRoleBinding:
    """Every ServiceAccount of ``namespace`` may bootstrap a kubelet (as deploy/ binds its own)."""
    return ClusterRoleBinding(
        metadata=ObjectMeta(name=f"wmco-test-node-bootstrapper-{namespace}"),
        roleRef=RoleRef(
            apiGroup="rbac.authorization.k8s.io",
            kind="ClusterRole",
            name="system:node-bootstrapper",
        ),
        subjects=[
            Subject(
                apiGroup="rbac.authorization.k8s.io",
                kind="Group",
                name=f"system:serviceaccounts:{namespace}",
            )
        ],
    )
