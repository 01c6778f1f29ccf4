"""The Kubernetes adapter's pure parts: error translation, time formats, client building."""

from __future__ import annotations

import datetime
from pathlib import Path

import httpx2
import lightkube
import pytest
from lightkube.models.meta_v1 import ObjectMeta, Status
from lightkube.resources.core_v1 import ConfigMap, Node

from wmco import kube


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (404, "NotFound", kube.NotFound),
        (409, "Conflict", kube.Conflict),
        (409, "AlreadyExists", kube.AlreadyExists),
        (403, "Forbidden", kube.Forbidden),
        (410, "Expired", kube.Gone),
        (500, "InternalError", kube.ApiError),
    ],
)
def test_api_errors_map_to_typed_errors(code: int, reason: str, expected: type) -> None:
    error = lightkube.ApiError(status=Status(code=code, reason=reason, message="m"))
    translated = kube.translate(error)
    assert type(translated) is expected
    assert isinstance(translated, kube.ApiError)
    assert (translated.code, translated.reason, translated.message) == (code, reason, "m")


def test_transport_errors_map_to_transport_error() -> None:
    error = httpx2.ConnectError("connection refused")
    translated = kube.translate(error)
    assert isinstance(translated, kube.TransportError)
    assert "connection refused" in str(translated)


def test_micro_time_always_has_six_fractional_digits() -> None:
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert kube.format_micro_time(moment) == "2026-01-02T03:04:05.000000Z"
    plus_one = datetime.datetime(
        2026, 1, 2, 4, 4, 5, 7, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
    )
    assert kube.format_micro_time(plus_one) == "2026-01-02T03:04:05.000007Z"


def test_parse_time_accepts_strings_datetimes_and_none() -> None:
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
    assert kube.parse_time("2026-01-02T03:04:05.000006Z") == moment
    assert kube.parse_time(moment) is moment
    assert kube.parse_time(None) is None


def test_ref_of_and_kind_of() -> None:
    obj = ConfigMap(metadata=ObjectMeta(name="a", namespace="ns", uid="u1"))
    assert kube.ref_of(obj) == kube.ObjectRef("v1", "ConfigMap", "a", "ns", "u1")
    assert kube.is_namespaced(ConfigMap) and not kube.is_namespaced(Node)
    machine = kube.namespaced_custom_resource(
        "machine.openshift.io", "v1beta1", "Machine", "machines"
    )
    assert kube.kind_of(machine) == ("machine.openshift.io/v1beta1", "Machine")


def test_make_client_reports_a_missing_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(kube.KubeError, match="not found"):
        kube.make_client(tmp_path / "nope")


async def test_make_client_from_a_kubeconfig_file(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: ctx, context: {cluster: c, user: u, namespace: work}}]
current-context: ctx
"""
    )
    client = kube.make_client(path, field_manager="me")
    try:
        assert client.namespace == "work"
        assert client.config.cluster.server == "https://127.0.0.1:6443"
    finally:
        await client.close()
