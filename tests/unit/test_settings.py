"""Settings: defaults, environment parsing, validation, derived cluster DNS."""

from __future__ import annotations

import pathlib

import pytest

from wmco import names, settings


def test_defaults_are_reference_compatible() -> None:
    s = settings.Settings()
    assert s.namespace == names.OPERATOR_NAMESPACE
    assert s.machine_api_namespace == "openshift-machine-api"
    assert s.ssh_port == 22
    assert s.concurrency == 50 and s.upload_memory_mib == 40
    assert s.cluster_dns_address == "172.30.0.10"
    assert s.network_profile is settings.NetworkProfile.AUTO
    assert s.kubelet_ca_configmap is None and s.pause_image is None


def test_from_env_reads_prefixed_variables() -> None:
    s = settings.Settings.from_env(
        {
            "WATCH_NAMESPACE": "wmco",
            "WMCO_SSH_PORT": "2222",
            "WMCO_CONCURRENCY": "3",
            "WMCO_LOG_FORMAT": "JSON",
            "WMCO_NETWORK_PROFILE": "OVN-Hybrid",
            "WMCO_KUBELET_CA_CONFIGMAP": "my-ns/my-ca:ca.crt",
            "WMCO_PAUSE_IMAGE": "mirror.local/pause:3.10.2",
            "WMCO_NETWORK_TIMEOUT": "120",
            "WMCO_PAYLOAD_DIR": "/tmp/payload",
            "WMCO_SERVICE_CIDR": "10.96.0.0/12",
            "WMCO_DEBUG": "yes",
            "WMCO_API_SERVER_URL": "https://127.0.0.1:6443",
            "UNRELATED": "x",
        }
    )
    assert s.namespace == "wmco"
    assert s.ssh_port == 2222
    assert s.concurrency == 3
    assert s.log_format is settings.LogFormat.JSON
    assert s.network_profile is settings.NetworkProfile.OVN_HYBRID
    assert s.kubelet_ca_configmap == settings.ConfigMapKey("my-ns", "my-ca", "ca.crt")
    assert str(s.kubelet_ca_configmap) == "my-ns/my-ca:ca.crt"
    assert s.pause_image == "mirror.local/pause:3.10.2"
    assert s.network_timeout == 120
    assert s.payload_dir == pathlib.Path("/tmp/payload")
    assert s.cluster_dns_address == "10.96.0.10"
    assert s.debug is True
    assert s.api_server_url == "https://127.0.0.1:6443"


def test_explicit_namespace_wins_over_watch_namespace() -> None:
    s = settings.Settings.from_env({"WATCH_NAMESPACE": "a", "WMCO_NAMESPACE": "b"})
    assert s.namespace == "b"


def test_cluster_dns_override() -> None:
    assert settings.Settings(cluster_dns="10.0.0.53").cluster_dns_address == "10.0.0.53"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"WMCO_SSH_PORT": "ssh"}, "WMCO_SSH_PORT"),
        ({"WMCO_SSH_PORT": "70000"}, "ssh_port"),
        ({"WMCO_CONCURRENCY": "0"}, "concurrency"),
        ({"WMCO_UPLOAD_MEMORY_MIB": "0"}, "upload_memory_mib"),
        ({"WMCO_DEBUG": "maybe"}, "WMCO_DEBUG"),
        ({"WMCO_NETWORK_PROFILE": "calico"}, "WMCO_NETWORK_PROFILE"),
        ({"WMCO_NETWORK_PROFILE": "hybrid-overlay"}, "WMCO_NETWORK_PROFILE"),
        ({"WMCO_NETWORK_PROFILE": "none"}, "WMCO_NETWORK_PROFILE"),
        ({"WMCO_KUBELET_CA_CONFIGMAP": "no-key"}, "WMCO_KUBELET_CA_CONFIGMAP"),
        ({"WMCO_KUBELET_CA_CONFIGMAP": "ns/name"}, "WMCO_KUBELET_CA_CONFIGMAP"),
        ({"WMCO_KUBELET_CA_CONFIGMAP": "NS/name:key"}, "WMCO_KUBELET_CA_CONFIGMAP"),
        ({"WMCO_KUBELET_CA_CONFIGMAP": "ns/name:a/b"}, "WMCO_KUBELET_CA_CONFIGMAP"),
        ({"WMCO_PAUSE_IMAGE": "pause image"}, "pause_image"),
        ({"WMCO_NETWORK_TIMEOUT": "0"}, "network_timeout"),
        ({"WMCO_SERVICE_CIDR": "nope"}, "service_cidr"),
        ({"WMCO_CLUSTER_DNS": "dns"}, "cluster_dns"),
        ({"WMCO_SSH_COMMAND_TIMEOUT": "-1"}, "ssh_command_timeout"),
        ({"WMCO_BOOTSTRAP_TOKEN_TTL": "599"}, "TokenRequest API's minimum"),
        ({"WMCO_BOOTSTRAP_NAMESPACE": "Not_A_Namespace"}, "bootstrap_namespace"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(settings.SettingsError, match=fragment):
        settings.Settings.from_env(env)


def test_empty_optional_values_mean_unset() -> None:
    s = settings.Settings.from_env({"WMCO_KUBELET_CA_CONFIGMAP": "", "WMCO_PAUSE_IMAGE": ""})
    assert s.kubelet_ca_configmap is None and s.pause_image is None
