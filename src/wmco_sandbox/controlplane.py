"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, controller-manager, scheduler.

The binaries are built from the Go module proxy by ``hack/controlplane/build.sh`` (``make
controlplane``) into a cache outside the repository, or taken from ``KUBEBUILDER_ASSETS`` (the
envtest convention). Nothing here fakes the API: tests and the sandbox talk to the real thing.

The cluster is configured like a kubeadm cluster in the ways that matter to a Windows node operator:
``Node,RBAC`` authorisation, the ``NodeRestriction`` admission plugin, bootstrap-token
authentication, the controller-manager signing CSRs with its own signer CA, the bootstrap-token and
``kube-public/cluster-info`` plumbing, and the binding that lets bootstrap tokens create CSRs. The
certificate authorities are kept apart as on OpenShift (serving, client, CSR signer, and the
kube-apiserver-to-kubelet signer), so a node given the wrong one fails as a real node would. What
kubeadm adds on top, and this control plane deliberately does NOT, is the binding that auto-approves
kubelet CSRs: approving them is the operator's job.

Every process runs in its own process group and is killed with the group on stop. A finaliser and a
parent-death signal make sure nothing is left running when the caller crashes.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from wmco_sandbox import pki

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
SERVICE_CIDR = "10.0.0.0/24"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
CLUSTER_CIDR = "10.128.0.0/14"
CLUSTER_DNS = "10.0.0.10"
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The control plane could not be located, started or reached."""


def project_root() -> Path:
    """The checkout this package runs from (src layout: two levels above the package)."""
    return Path(__file__).resolve().parents[2]


def _required_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^require {re.escape(module)} (\S+)$", go_mod.read_text(), re.MULTILINE)
    if not match:
        raise ControlPlaneError(f"{go_mod} does not require {module}")
    return match.group(1)


def versions() -> tuple[str, str]:
    """Return (kubernetes version, etcd version) pinned by the wrapper modules."""
    hack = project_root() / "hack" / "controlplane"
    return (
        _required_version(hack / "kube" / "go.mod", "k8s.io/kubernetes"),
        _required_version(hack / "etcd" / "go.mod", "go.etcd.io/etcd/server/v3"),
    )


def cache_bin_dir() -> Path:
    """The folder ``make controlplane`` builds into (keyed by the pinned versions)."""
    kube, etcd = versions()
    base = Path(os.environ.get("WMCO_CACHE_DIR", Path.home() / ".cache" / "wmco"))
    return base / "controlplane" / f"kubernetes-{kube}_etcd-{etcd}" / "bin"


def find_binaries() -> Path:
    """Locate the five binaries: ``KUBEBUILDER_ASSETS`` first, then the build cache."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    folder = Path(assets) if assets else cache_bin_dir()
    missing = [b for b in BINARIES if not os.access(folder / b, os.X_OK)]
    if missing:
        origin = "KUBEBUILDER_ASSETS" if assets else "the build cache"
        raise ControlPlaneError(
            f"{origin} ({folder}) lacks {', '.join(missing)}: run `make controlplane` "
            "(builds them from the Go module proxy) or point KUBEBUILDER_ASSETS at a folder holding them"
        )
    return folder


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Run in the child before exec: own process group, and SIGKILL when the parent dies."""
    os.setpgrp()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_groups(pids: list[int]) -> None:
    """Terminate, then kill, every process group in `pids` (used by stop and the finaliser)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
                alive.append(pid)
        deadline = time.monotonic() + 10
        while alive and time.monotonic() < deadline:
            still = []
            for pid in alive:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if not done:
                    still.append(pid)
            alive = still
            if alive:
                time.sleep(0.05)
        if not alive:
            return


@dataclass
class ControlPlane:
    """A running (or about to run) control plane.

    Use it as a context manager, sync or async::

        async with ControlPlane() as cp:
            print(cp.kubeconfig)

    After start: ``ca_pem``/``ca_file`` is the serving CA (what kubeconfigs and kubelets trust for
    the API server), ``client_ca_pem`` signs the admin's and components' client certificates,
    ``signer_ca_pem`` is the controller-manager's CSR signer (kubelet client and serving
    certificates), and ``kubelet_client_ca_pem`` signs the certificate the API server presents to
    kubelets (what a kubelet's ``clientCAFile`` must hold).
    """

    state_dir: Path | None = None
    bin_dir: Path | None = None
    extra_apiserver_args: Sequence[str] = ()
    server: str = ""
    kubeconfig: Path = field(default=Path())
    ca_file: Path = field(default=Path())
    ca_pem: bytes = b""
    serving_ca_pem: bytes = b""
    client_ca_pem: bytes = b""
    signer_ca_pem: bytes = b""
    kubelet_client_ca_pem: bytes = b""
    _ca: pki.CertificateAuthority | None = None
    _pids: list[int] = field(default_factory=list)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _finalizer: weakref.finalize[Any, Any] | None = None

    # ----------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start all five pieces and wait until the API is usable."""
        bins = self.bin_dir or find_binaries()
        if self.state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="wmco-controlplane-")
            self.state_dir = Path(self._tmp.name)
        state = self.state_dir
        state.mkdir(parents=True, exist_ok=True)
        # Every start is a fresh cluster: old etcd data would not match the new PKI.
        shutil.rmtree(state / "etcd", ignore_errors=True)
        pki_dir = state / "pki"
        logs = state / "logs"
        for d in (pki_dir, logs):
            d.mkdir(exist_ok=True)
        self._finalizer = weakref.finalize(self, _kill_groups, self._pids)
        try:
            self._start(bins, state, pki_dir, logs)
        except BaseException:
            self.stop()
            raise

    def _start(self, bins: Path, state: Path, pki_dir: Path, logs: Path) -> None:
        # Four CAs, as OpenShift keeps them apart, so that a file holding the wrong one fails:
        # serving (the API server's certificate; kubelets bootstrap against it), client (admin,
        # controller-manager, scheduler), CSR signer (kubelet client and serving certificates)
        # and kubelet-client (the API server's own certificate when it calls kubelets).
        serving_ca = pki.CertificateAuthority("wmco-sandbox-serving-ca")
        client_ca = self._ca = pki.CertificateAuthority("wmco-sandbox-client-ca")
        signer_ca = pki.CertificateAuthority("wmco-sandbox-csr-signer")
        kubelet_client_ca = pki.CertificateAuthority(
            "wmco-sandbox-kube-apiserver-to-kubelet-signer"
        )
        ca_file, _ = serving_ca.pair.write(pki_dir, "serving-ca")
        self.ca_file, self.ca_pem = ca_file, serving_ca.pair.cert_pem
        self.serving_ca_pem = serving_ca.pair.cert_pem
        self.client_ca_pem = client_ca.pair.cert_pem
        self.signer_ca_pem = signer_ca.pair.cert_pem
        self.kubelet_client_ca_pem = kubelet_client_ca.pair.cert_pem
        signer_crt, signer_key = signer_ca.pair.write(pki_dir, "csr-signer")
        client_ca_bundle = pki_dir / "client-ca-bundle.crt"
        client_ca_bundle.write_bytes(
            self.client_ca_pem + self.signer_ca_pem + self.kubelet_client_ca_pem
        )
        serving = serving_ca.issue(
            "kube-apiserver",
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ip_addresses=["127.0.0.1", "10.0.0.1"],
            server=True,
        )
        serving_crt, serving_key = serving.write(pki_dir, "apiserver")
        sa_private, sa_public = pki.service_account_key()
        (pki_dir / "sa.key").write_bytes(sa_private)
        (pki_dir / "sa.pub").write_bytes(sa_public)
        # The API server calls kubelets (logs, exec) with this identity; kubelets trust its CA in
        # their clientCAFile and authorise it with a SubjectAccessReview (kubelet-api-admin).
        kubelet_client_crt, kubelet_client_key = kubelet_client_ca.issue(
            KUBELET_CLIENT_USER, client=True
        ).write(pki_dir, "apiserver-kubelet-client")

        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        self._spawn(
            bins / "etcd",
            "etcd",
            logs,
            [
                "--name=default",
                f"--data-dir={state / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait(lambda: self._http_ok(f"http://127.0.0.1:{etcd_port}/health"), "etcd", 30)

        self._spawn(
            bins / "kube-apiserver",
            "kube-apiserver",
            logs,
            [
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={serving_crt}",
                f"--tls-private-key-file={serving_key}",
                f"--client-ca-file={client_ca_bundle}",
                "--enable-bootstrap-token-auth=true",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki_dir / 'sa.pub'}",
                f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--kubelet-client-certificate={kubelet_client_crt}",
                f"--kubelet-client-key={kubelet_client_key}",
                # Kubelet serving certificates come from the CSR signer; verify them.
                f"--kubelet-certificate-authority={signer_crt}",
                # Dial kubelets at their InternalIP, as OpenShift does: node names do not resolve.
                "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
                "--allow-privileged=true",
                # The `kubernetes` Service endpoints would point at an address nothing serves.
                "--endpoint-reconciler-type=none",
                *self._advertise_args(),
                *self.extra_apiserver_args,
            ],
        )

        admin = client_ca.issue("wmco-admin", organizations=["system:masters"], client=True)
        self.kubeconfig = state / "kubeconfig"
        self.write_kubeconfig(self.kubeconfig, "admin", admin)
        self._wait(lambda: self._api_ok("/readyz"), "kube-apiserver /readyz", 90)

        kcm_kubeconfig = state / "kube-controller-manager.kubeconfig"
        self.write_kubeconfig(
            kcm_kubeconfig,
            "kube-controller-manager",
            client_ca.issue("system:kube-controller-manager", client=True),
        )
        auth_args = [
            f"--{k}kubeconfig={kcm_kubeconfig}" for k in ("", "authentication-", "authorization-")
        ]
        self._spawn(
            bins / "kube-controller-manager",
            "kube-controller-manager",
            logs,
            [
                *auth_args,
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki_dir / 'sa.key'}",
                f"--root-ca-file={ca_file}",
                f"--cluster-signing-cert-file={signer_crt}",
                f"--cluster-signing-key-file={signer_key}",
                # No automatic approval of any CSR: the operator is the only approver of kubelet CSRs.
                "--controllers=*,bootstrapsigner,tokencleaner,-csrapproving",
                # Nodes get spec.podCIDR, as on kubeadm clusters (flannel's Windows agent needs it).
                "--allocate-node-cidrs=true",
                f"--cluster-cidr={CLUSTER_CIDR}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--node-monitor-grace-period=20s",
            ],
        )
        sched_kubeconfig = state / "kube-scheduler.kubeconfig"
        self.write_kubeconfig(
            sched_kubeconfig,
            "kube-scheduler",
            client_ca.issue("system:kube-scheduler", client=True),
        )
        self._spawn(
            bins / "kube-scheduler",
            "kube-scheduler",
            logs,
            [
                *(
                    f"--{k}kubeconfig={sched_kubeconfig}"
                    for k in ("", "authentication-", "authorization-")
                ),
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
            ],
        )
        self.bin_dir = bins
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(self._kubeadm_objects()))
        self._wait(self._default_service_account_exists, "default ServiceAccount", 60)

    def stop(self) -> None:
        """Stop every process this control plane started (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()
        for proc in self._procs.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=0)
        self._procs.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        # Started from the loop's own thread on purpose: the children's parent-death signal is
        # tied to the thread that forked them, and an executor thread may go away before we do.
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------------------- helpers

    def processes(self) -> dict[str, int]:
        """Name → pid of every process started."""
        return {name: p.pid for name, p in self._procs.items()}

    def issue_client(self, user: str, groups: Sequence[str] = ()) -> pki.KeyPair:
        """A client certificate for `user` in `groups`, signed by the client CA."""
        if self._ca is None:
            raise ControlPlaneError("control plane not started")
        return self._ca.issue(user, organizations=groups, client=True)

    def kubeconfig_for(
        self, user: str, groups: Sequence[str] = (), path: Path | None = None
    ) -> Path:
        """Write a kubeconfig authenticating as `user` (client certificate) and return its path."""
        assert self.state_dir is not None
        target = path or self.state_dir / f"{re.sub(r'[^a-zA-Z0-9_.-]', '_', user)}.kubeconfig"
        self.write_kubeconfig(target, user, self.issue_client(user, groups))
        return target

    def write_kubeconfig(self, path: Path, user: str, creds: pki.KeyPair) -> None:
        """Write a kubeconfig with embedded CA and client certificate (mode 0600)."""

        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "wmco-sandbox",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(self.ca_pem),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": b64(creds.cert_pem),
                        "client-key-data": b64(creds.key_pem),
                    },
                }
            ],
            "contexts": [{"name": user, "context": {"cluster": "wmco-sandbox", "user": user}}],
            "current-context": user,
        }
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config))

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        """Run the control plane's own kubectl as admin and return its stdout."""
        kubectl = (self.bin_dir or find_binaries()) / "kubectl"
        result = subprocess.run(
            [str(kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin.encode() if stdin is not None else None,
            capture_output=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)}: {result.stderr.decode().strip()}")
        return result.stdout.decode()

    def get_json(self, path: str) -> Any:
        """GET `path` from the API server as admin and decode the JSON answer."""
        with self._open(path) as response:
            return json.loads(response.read())

    # ----------------------------------------------------------------------------- internals

    @staticmethod
    def _advertise_args() -> list[str]:
        # kube-apiserver picks its advertised address from the default route; on a host without
        # one it refuses to start, so name an address explicitly there.
        try:
            routes = Path("/proc/net/route").read_text().splitlines()[1:]
        except OSError:
            routes = []
        if any(line.split()[1] == "00000000" for line in routes if len(line.split()) > 1):
            return []
        return ["--advertise-address=10.0.0.1"]

    def _spawn(self, binary: Path, name: str, logs: Path, args: list[str]) -> None:
        log = (logs / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(
                [str(binary), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # own process group + parent-death signal
                close_fds=True,
            )
        finally:
            log.close()
        self._procs[name] = proc
        self._pids.append(proc.pid)

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            code = proc.poll()
            if code is not None:
                assert self.state_dir is not None
                tail = (self.state_dir / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise ControlPlaneError(
                    f"{name} exited with status {code}; last log lines:\n{tail}"
                )

    def _wait(self, ready: Any, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{what} not ready after {timeout:.0f}s (logs in {self.state_dir}/logs)"
                )
            time.sleep(0.2)

    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    @contextlib.contextmanager
    def _open(self, path: str) -> Iterator[Any]:
        assert self.state_dir is not None
        admin = yaml.safe_load(self.kubeconfig.read_text())["users"][0]["user"]

        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        with tempfile.TemporaryDirectory(dir=self.state_dir) as tmp:
            crt, key = Path(tmp) / "c.crt", Path(tmp) / "c.key"
            crt.write_bytes(base64.b64decode(admin["client-certificate-data"]))
            key.write_bytes(base64.b64decode(admin["client-key-data"]))
            ctx.load_cert_chain(crt, key)
        with urllib.request.urlopen(self.server + path, context=ctx, timeout=5) as response:
            yield response

    def _api_ok(self, path: str) -> bool:
        try:
            with self._open(path) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _default_service_account_exists(self) -> bool:
        try:
            self.get_json("/api/v1/namespaces/default/serviceaccounts/default")
        except (urllib.error.URLError, OSError):
            return False
        return True

    def _kubeadm_objects(self) -> list[dict[str, Any]]:
        """What kubeadm's bootstrap-token phase creates, minus the CSR auto-approval bindings."""
        cluster_info = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                    },
                }
            ],
            "users": [],
            "contexts": [],
        }
        return [
            {
                # kubeadm's binding for the API server's kubelet-client identity.
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "kube-apiserver-kubelet-api-admin"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:kubelet-api-admin",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "User",
                        "name": KUBELET_CLIENT_USER,
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "kubeadm:kubelet-bootstrap"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:node-bootstrapper",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Group",
                        "name": "system:bootstrappers",
                    }
                ],
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "cluster-info", "namespace": "kube-public"},
                "data": {"kubeconfig": yaml.safe_dump(cluster_info)},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {
                    "name": "kubeadm:bootstrap-signer-clusterinfo",
                    "namespace": "kube-public",
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["configmaps"],
                        "resourceNames": ["cluster-info"],
                        "verbs": ["get"],
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {
                    "name": "kubeadm:bootstrap-signer-clusterinfo",
                    "namespace": "kube-public",
                },
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "kubeadm:bootstrap-signer-clusterinfo",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "User",
                        "name": "system:anonymous",
                    }
                ],
            },
        ]


def kubectl_path() -> Path:
    """The kubectl this sandbox uses."""
    return find_binaries() / "kubectl"


def remove_state(path: Path) -> None:
    """Remove a state directory left by an earlier run."""
    shutil.rmtree(path, ignore_errors=True)
