"""Every name the operator shares with the cluster: namespaces, secrets, labels, annotations.

The defaults are the reference operator's (openshift/windows-machine-config-operator), so its
documentation and the habits of its users keep working. No other module spells one of these strings
literally; they import this module (``from wmco import names``) and say
``names.PUB_KEY_HASH_ANNOTATION``.

The exact meaning of each annotation and label is described in
``shared/reference/wmco-anchor.md`` §1.9 and §2; the short comments here say who writes it.
"""

from __future__ import annotations

import enum
from typing import Final

# --- Namespaces -------------------------------------------------------------------------------

OPERATOR_NAMESPACE: Final = "openshift-windows-machine-config-operator"
"""Default namespace of the operator (in-cluster: the pod's own, see ``settings``)."""

MACHINE_API_NAMESPACE: Final = "openshift-machine-api"
"""Namespace of Machines, MachineSets and the user-data Secret."""

CLUSTER_API_NAMESPACE: Final = "openshift-cluster-api"
"""Optional namespace that receives a copy of the user-data Secret when it exists."""

BOOTSTRAP_NAMESPACE: Final = "openshift-windows-machine-config-operator-bootstrap"
"""Namespace of the per-host bootstrap ServiceAccounts, and of nothing else.

``deploy/`` binds its group (``system:serviceaccounts:<it>``) to ``system:node-bootstrapper`` once,
so the operator creates accounts there without any right to write RBAC."""

KUBE_SYSTEM_NAMESPACE: Final = "kube-system"
KUBE_PUBLIC_NAMESPACE: Final = "kube-public"
NODE_LEASE_NAMESPACE: Final = "kube-node-lease"

# --- Secrets and ConfigMaps -------------------------------------------------------------------

PRIVATE_KEY_SECRET: Final = "cloud-private-key"
"""Secret (operator namespace) the user creates with the SSH private key."""

PRIVATE_KEY_SECRET_KEY: Final = "private-key.pem"
"""Data key of :data:`PRIVATE_KEY_SECRET`."""

USER_DATA_SECRET: Final = "windows-user-data"
"""Secret (Machine API namespace) the Windows MachineSets reference; written by the operator."""

USER_DATA_SECRET_KEY: Final = "userData"
"""Data key of :data:`USER_DATA_SECRET`."""

TRUSTED_PRIVATE_KEY_SECRET: Final = "wmco-trusted-private-key"
"""Secret (operator namespace, the operator's own) with every private key a host may still trust.

Holds the current key of ``cloud-private-key`` whenever no rotation is under way, so when the user
changes that Secret the operator still has the previous key (also after a restart) until every
host was moved to the new one (:mod:`wmco.controllers.rekey`)."""

INSTANCES_CONFIGMAP: Final = "windows-instances"
"""ConfigMap (operator namespace) of bring-your-own-host instances: ``<address>: username=<u>``."""

INSTANCES_USERNAME_KEY: Final = "username"
"""The only key accepted in a ``windows-instances`` entry value."""

SSH_HOST_KEYS_CONFIGMAP: Final = "windows-ssh-host-keys"
"""ConfigMap of pinned SSH host keys of instances without a Node yet (address -> base64 key)."""

CLUSTER_INFO_CONFIGMAP: Final = "cluster-info"
"""``kube-public/cluster-info``: API server URL and CA for plain Kubernetes."""

LEADER_ELECTION_LEASE: Final = "windows-machine-config-operator-lock"
"""Lease used for leader election (same name as the reference's lock)."""

# --- Machine API ------------------------------------------------------------------------------

MACHINE_OS_ID_LABEL: Final = "machine.openshift.io/os-id"
"""Machine label that marks a Windows Machine (value :data:`MACHINE_OS_ID_WINDOWS`)."""

MACHINE_OS_ID_WINDOWS: Final = "Windows"

IGNORE_LABEL: Final = "windowsmachineconfig.openshift.io/ignore"
"""Machine label opting out of management when ``"true"``."""

# --- Node labels ------------------------------------------------------------------------------

_WMCO_PREFIX: Final = "windowsmachineconfig.openshift.io/"

BYOH_LABEL: Final = _WMCO_PREFIX + "byoh"
"""``"true"`` on Nodes of bring-your-own-host instances."""

UPGRADING_LABEL: Final = _WMCO_PREFIX + "upgrading"
"""``"true"`` while a Node is being deconfigured and configured again."""

NODE_OS_ID_LABEL: Final = "node.openshift.io/os_id"
"""Label the kubelet sets through ``--node-labels`` (value :data:`NODE_OS_ID_WINDOWS`)."""

NODE_OS_ID_WINDOWS: Final = "Windows"

WORKER_ROLE_LABEL: Final = "node-role.kubernetes.io/worker"
OS_LABEL: Final = "kubernetes.io/os"
OS_LABEL_WINDOWS: Final = "windows"
ARCH_LABEL: Final = "kubernetes.io/arch"
HOSTNAME_LABEL: Final = "kubernetes.io/hostname"
WINDOWS_BUILD_LABEL: Final = "node.kubernetes.io/windows-build"

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "windows-machine-config-operator"
EVENT_COMPONENT: Final = "windows-machine-config-operator"
"""The ``reportingComponent`` (and ``source.component``) of the operator's Events."""

TRUE: Final = "true"
"""Label/annotation value used for boolean flags."""

# --- Node annotations -------------------------------------------------------------------------

VERSION_ANNOTATION: Final = _WMCO_PREFIX + "version"
"""What the Node was configured with (:func:`node_version`); set when configuration is complete."""

DESIRED_VERSION_ANNOTATION: Final = _WMCO_PREFIX + "desired-version"
"""What the Node is being configured to (:func:`node_version`)."""


def node_version(operator_version: str, payload_version: str) -> str:
    """The ``version`` a configured Node carries: the operator's and its payload's.

    The reference operator ships one payload per release, so its version alone says what is on a
    node; ours can run another payload (``WMCO_PAYLOAD_DIR``), and a node configured with other
    binaries is not up to date.
    """
    return f"{operator_version}+payload.{payload_version}"


PUB_KEY_HASH_ANNOTATION: Final = _WMCO_PREFIX + "pub-key-hash"
"""sha256 hex of the authorized_keys form of the public key in use; ``""`` requests replacement."""

USERNAME_ANNOTATION: Final = _WMCO_PREFIX + "username"
"""User name for SSH (encrypted with the private key in the reference operator)."""

REBOOT_REQUIRED_ANNOTATION: Final = _WMCO_PREFIX + "reboot-required"
"""Present when the host must be rebooted safely (cordon, drain, reboot, uncordon)."""

SSH_HOST_KEY_ANNOTATION: Final = _WMCO_PREFIX + "ssh-host-key"
"""Base64 of the SSH wire format of the pinned host key."""

SSH_HOST_KEY_TYPE_ANNOTATION: Final = _WMCO_PREFIX + "ssh-host-key-type"
"""Algorithm name of the pinned host key, e.g. ``ssh-ed25519``."""

# --- Per-host bootstrap ServiceAccounts (one per instance, deleted after the join) -----------

BOOTSTRAP_ACCOUNT_PREFIX: Final = "windows-host-"
"""Name prefix of the per-host bootstrap ServiceAccounts (``windows-host-<16 hex of the address>``)."""

INSTANCE_ADDRESS_ANNOTATION: Final = _WMCO_PREFIX + "instance-address"
"""On a Node, and on a bootstrap ServiceAccount: the address of the instance."""

INSTANCE_NODE_NAME_ANNOTATION: Final = _WMCO_PREFIX + "node-name"
"""On a bootstrap ServiceAccount: the node name that instance reported (``hostname``)."""

NODE_BOOTSTRAPPER_CLUSTER_ROLE: Final = "system:node-bootstrapper"
"""The built-in ClusterRole that lets a kubelet create its CSRs (bound in ``deploy/``)."""

MACHINE_ANNOTATION: Final = "machine.openshift.io/machine"
"""On a Node: ``<namespace>/<name>`` of its Machine (what OpenShift's nodelink controller sets)."""

KUBELET_CA_HASH_ANNOTATION: Final = _WMCO_PREFIX + "kubelet-ca-hash"
"""sha256 hex of the kubelet client CA bundle written to the host (``C:\\k\\kubelet-ca.crt``).

Compared in the up-to-date check: a rotated bundle re-queues the host, which rewrites only that
file (the kubelet re-reads it; nothing restarts)."""

# --- Issue 10 (mon): node monitoring (windows_exporter over TLS) ------------------------------
# The objects below carry MANAGED_BY_LABEL=MANAGED_BY_VALUE: that label marks them as the
# operator's own (an edit is reverted with an Event).

WINDOWS_EXPORTER: Final = "windows-exporter"
"""Service, EndpointSlice and ServiceMonitor in the operator namespace (also the scrape ``job``)."""

WINDOWS_EXPORTER_PORT: Final = 9182
"""windows_exporter's HTTPS port on every host (the reference operator's)."""

WINDOWS_EXPORTER_PORT_NAME: Final = "metrics"
"""Name of that port on the Service, the EndpointSlice and the ServiceMonitor endpoint."""

WINDOWS_EXPORTER_CA_SECRET: Final = "windows-exporter-ca"
"""Secret (operator namespace, ``kubernetes.io/tls``) with the CA of the exporters' certificates:
``tls.crt``/``tls.key`` sign, ``ca.crt`` is the bundle Prometheus trusts."""

EXPORTER_CERT_ANNOTATION: Final = _WMCO_PREFIX + "exporter-cert"
"""On a Node: JSON record of the windows_exporter serving certificate written to its host
(digests of certificate, key and CA; renewal time; the names it covers)."""

SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"
"""EndpointSlice label naming its Service."""

ENDPOINTSLICE_MANAGED_BY_LABEL: Final = "endpointslice.kubernetes.io/managed-by"
ENDPOINTSLICE_MANAGED_BY_VALUE: Final = "windows-machine-config-operator.openshift.io"
"""Marks the EndpointSlice as ours, not the EndpointSlice controller's (which leaves it alone)."""

MONITORING_GROUP: Final = "monitoring.coreos.com"
MONITORING_VERSION: Final = "v1"
SERVICE_MONITOR_KIND: Final = "ServiceMonitor"
SERVICE_MONITOR_PLURAL: Final = "servicemonitors"
"""prometheus-operator's ServiceMonitor (kept only when its CRD is served)."""

# --- Network (OVN-Kubernetes hybrid overlay, HNS) -----------------------------------------------

HYBRID_OVERLAY_SUBNET_ANNOTATION: Final = "k8s.ovn.org/hybrid-overlay-node-subnet"
"""On a Windows Node: the pod subnet the OVN-Kubernetes control plane allocated (``10.132.0.0/24``)."""

HYBRID_OVERLAY_DRMAC_ANNOTATION: Final = "k8s.ovn.org/hybrid-overlay-distributed-router-gateway-mac"
"""On a Windows Node: set by hybrid-overlay-node once it made the overlay network."""

HYBRID_OVERLAY_NETWORK: Final = "OVNKubernetesHybridOverlayNetwork"
"""HNS network of the pods (Overlay, non-persistent), made by hybrid-overlay-node."""

HYBRID_OVERLAY_BASE_NETWORK: Final = "BaseOVNKubernetesHybridOverlayNetwork"
"""HNS network hybrid-overlay-node makes first so the host's vSwitch survives reboots."""

VIP_ENDPOINT: Final = "VIPEndpoint"
"""HNS endpoint on the overlay network, attached to the host; its address is kube-proxy's sourceVip."""

HOST_COMPARTMENT: Final = 1
"""Network compartment of the host, where the VIP endpoint is attached."""

NETWORK_OPERATOR_GROUP: Final = "operator.openshift.io"
NETWORK_OPERATOR_VERSION: Final = "v1"
NETWORK_OPERATOR_KIND: Final = "Network"
NETWORK_OPERATOR_PLURAL: Final = "networks"
NETWORK_OPERATOR_NAME: Final = "cluster"
"""``networks.operator.openshift.io/cluster``: OpenShift's network configuration (cluster-scoped)."""

OVN_KUBERNETES_NETWORK_TYPE: Final = "OVNKubernetes"
"""``spec.defaultNetwork.type`` of an OVN-Kubernetes cluster."""

# --- Kubelet client CA (the CA that signs the API server's kubelet-client certificate) ----------

OPENSHIFT_KUBE_APISERVER_OPERATOR_NAMESPACE: Final = "openshift-kube-apiserver-operator"
KUBELET_CLIENT_CA_CONFIGMAP: Final = "kube-apiserver-to-kubelet-client-ca"
"""OpenShift: the kube-apiserver-to-kubelet signer bundle (namespace above)."""

KUBELET_CLIENT_CA_KEY: Final = "ca-bundle.crt"
"""Data key of :data:`KUBELET_CLIENT_CA_CONFIGMAP`."""

EXTENSION_APISERVER_AUTHENTICATION_CONFIGMAP: Final = "extension-apiserver-authentication"
"""Plain Kubernetes: ``kube-system/extension-apiserver-authentication``, the API server's client CAs."""

CLIENT_CA_FILE_KEY: Final = "client-ca-file"
"""Data key of :data:`EXTENSION_APISERVER_AUTHENTICATION_CONFIGMAP`."""

# --- Taints -----------------------------------------------------------------------------------

WINDOWS_TAINT_KEY: Final = "os"
WINDOWS_TAINT_VALUE: Final = "Windows"
WINDOWS_TAINT_EFFECT: Final = "NoSchedule"
"""Together: the taint ``os=Windows:NoSchedule`` every Windows Node registers with."""

# --- CSRs -------------------------------------------------------------------------------------

CSR_SIGNER_KUBELET_CLIENT: Final = "kubernetes.io/kube-apiserver-client-kubelet"
CSR_SIGNER_KUBELET_SERVING: Final = "kubernetes.io/kubelet-serving"
NODE_USER_PREFIX: Final = "system:node:"
NODES_GROUP: Final = "system:nodes"
SERVICE_ACCOUNT_USER_PREFIX: Final = "system:serviceaccount:"
"""``system:serviceaccount:<namespace>:<name>``: how the API server names a ServiceAccount."""
SERVICE_ACCOUNTS_GROUP_PREFIX: Final = "system:serviceaccounts:"
"""``system:serviceaccounts:<namespace>``: the group of every ServiceAccount of a namespace."""
AUTHENTICATED_GROUP: Final = "system:authenticated"
CSR_APPROVAL_REASON: Final = "WMCOApprove"
CSR_APPROVAL_MESSAGE: Final = "This CSR was approved by the WMCO certificate Approver."
CSR_DENIAL_REASON: Final = "WMCODeny"

# --- Issue 10 (rtc): RuntimeClasses and Hyper-V isolation ---------------------------------------
# The operator's RuntimeClasses carry MANAGED_BY_LABEL=MANAGED_BY_VALUE; that label is what makes
# one "its own" (a RuntimeClass without it is never changed or deleted).

PROCESS_HANDLER: Final = "runhcs-wcow-process"
"""containerd's process-isolation runtime handler (containerd's Windows default runtime)."""

HYPERV_HANDLER: Final = "runhcs-wcow-hypervisor"
"""containerd's Hyper-V isolation runtime handler (``SandboxIsolation = 1``, containerd#6901)."""

WINDOWS_YEARS: Final = {17763: "2019", 20348: "2022", 26100: "2025"}
"""Windows Server build -> release year: the builds the operator names RuntimeClasses after."""

HYPERV_LABEL: Final = _WMCO_PREFIX + "hyperv"
"""``"true"`` on Nodes whose host has the Hyper-V role and runs Hyper-V isolated pods."""

HYPERV_CHECKED_ANNOTATION: Final = _WMCO_PREFIX + "hyperv-checked"
"""On a Node that cannot run Hyper-V isolation: the ``hyperv`` setting it was checked under."""


def hyperv_build_handler(build: int) -> str:
    """The Hyper-V handler for containers of Windows build ``build`` (AKS's naming).

    ``runhcs-wcow-hypervisor-17763`` runs a Windows Server 2019 container in a utility VM on any
    host of that build or newer.
    """
    return f"{HYPERV_HANDLER}-{build}"


def runtime_class_name(year: str, *, hyperv: bool = False, host_year: str | None = None) -> str:
    """The name of a managed RuntimeClass.

    Args:
        year: Release year of the containers it runs (``2022``).
        hyperv: Hyper-V isolated rather than process isolated.
        host_year: For Hyper-V: the release year of the hosts, when newer than ``year``.

    Returns:
        ``windows-2022``, ``windows-2022-hyperv`` or ``windows-2019-hyperv-on-2022``.
    """
    name = f"windows-{year}"
    if not hyperv:
        return name
    name += "-hyperv"
    return f"{name}-on-{host_year}" if host_year and host_year != year else name


# --- Windows services -------------------------------------------------------------------------

SERVICE_DESCRIPTION_PREFIX: Final = "wmco managed"
"""Description of every Windows service the operator manages: ``wmco managed <name>``."""


class EventReason(enum.StrEnum):
    """Reasons of the Kubernetes Events the operator emits (reference-compatible spellings)."""

    MACHINE_SETUP = "MachineSetup"
    MACHINE_SETUP_FAILURE = "MachineSetupFailure"
    INSTANCE_SETUP = "InstanceSetup"
    INSTANCE_SETUP_FAILURE = "InstanceSetupFailure"
    INSTANCE_TEARDOWN = "InstanceTeardown"
    INSTANCE_TEARDOWN_FAILURE = "InstanceTeardownFailure"
    INVALID_INSTANCE = "InvalidInstance"
    CSR_APPROVED = "CSRApproved"
    CSR_DENIED = "CSRDenied"
    HOST_KEY_MISMATCH = "HostKeyMismatch"
    NODE_REBOOT = "NodeReboot"
    NODE_UPGRADE = "NodeUpgrade"
    # issue 10 (mon)
    MONITORING_OBJECT_RESTORED = "MonitoringObjectRestored"
    EXPORTER_CA_ROTATED = "ExporterCARotated"
    EXPORTER_CA_REPLACED = "ExporterCAReplaced"
    USER_DATA_UPDATED = "UserDataUpdated"
    PRIVATE_KEY_INVALID = "PrivateKeyInvalid"
    MONITORING_ENABLED = "monitoringEnabled"
    MONITORING_DISABLED = "monitoringDisabled"
    KUBELET_CLIENT_CA_INVALID = "KubeletClientCAInvalid"
    # issue 10 (rtc)
    RUNTIME_CLASS_RESTORED = "RuntimeClassRestored"
    RUNTIME_CLASS_CONFLICT = "RuntimeClassConflict"
    HYPERV_UNAVAILABLE = "HyperVUnavailable"
    # issue 11 (rollout)
    NODE_UPGRADE_FAILED = "NodeUpgradeFailed"
    DRAIN_BLOCKED = "DrainBlocked"
    # issue 11 (drift)
    HOST_DRIFT_REPAIRED = "HostDriftRepaired"
    # issue 11 (rekey)
    HOST_KEY_ROTATED = "HostKeyRotated"
    HOST_KEY_ROTATION_FAILED = "HostKeyRotationFailed"
    KEY_ROTATION_COMPLETE = "KeyRotationComplete"


def service_description(service_name: str) -> str:
    """Return the description that marks a Windows service as managed by the operator.

    Args:
        service_name: The Windows service name, e.g. ``kubelet``.

    Returns:
        ``wmco managed <service_name>``.
    """
    return f"{SERVICE_DESCRIPTION_PREFIX} {service_name}"


def service_account_user(namespace: str, name: str) -> str:
    """The user name the API server gives a ServiceAccount (what a CSR's ``spec.username`` holds)."""
    return f"{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}"


def service_accounts_group(namespace: str) -> str:
    """The group every ServiceAccount of ``namespace`` is in."""
    return f"{SERVICE_ACCOUNTS_GROUP_PREFIX}{namespace}"
