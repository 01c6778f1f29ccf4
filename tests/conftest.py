"""Shared fixtures: ONE real control plane per test session, a fresh namespace per test.

Nothing fakes the Kubernetes API. When the control-plane binaries are missing the fixture fails
loudly (it does not skip): run `make controlplane` or set KUBEBUILDER_ASSETS. The same holds for
the real Windows payload (``real_payload``, tests marked ``payload``): run `make payload`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from wmco.payload import manifest as payload_manifest
from wmco_sandbox import payloads
from wmco_sandbox.controlplane import ControlPlane


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    state = Path(os.environ["WMCO_TEST_STATE_DIR"]) if "WMCO_TEST_STATE_DIR" in os.environ else None
    plane = ControlPlane(state_dir=state or tmp_path_factory.mktemp("controlplane"))
    with plane:
        yield plane


@pytest.fixture(scope="session")
def real_payload() -> payload_manifest.Manifest:
    """The real payload ``make payload`` built for the pinned versions (fails if it is not built)."""
    directory = payloads.cached_dir()
    if not payloads.is_built(directory):
        pytest.fail(
            f"the real Windows payload is not built in {directory}: run `make payload` "
            "(hack/payload/build.sh; about ten minutes on a cold machine). `make test` and "
            "`make test-payload` build it first.",
            pytrace=False,
        )
    return payload_manifest.load_manifest(directory)


def admin_client(control_plane: ControlPlane) -> AsyncClient:
    """A lightkube client authenticated as cluster admin."""
    return AsyncClient(
        config=KubeConfig.from_file(control_plane.kubeconfig), field_manager="wmco-tests"
    )


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[AsyncClient]:
    client = admin_client(control_plane)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def namespace(kube: AsyncClient) -> AsyncIterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    await kube.create(Namespace(metadata=ObjectMeta(name=name)))
    try:
        yield name
    finally:
        await kube.delete(Namespace, name)
