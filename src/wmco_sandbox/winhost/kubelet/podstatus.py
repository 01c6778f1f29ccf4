"""What the simulated kubelet writes about a pod: admission, Pending and Running status (pure).

The kubelet's decisions about one pod bound to its node, free of I/O: the admission predicates it
checks itself (``spec.os``, ``nodeSelector``), the status of a pod it cannot start yet (Pending,
containers waiting in ``ContainerCreating``, as ``generateAPIPodStatus`` reports while the pod
network is not ready or the sandbox fails) and the status of a pod whose sandbox and containers
run (Running, pod IP = the sandbox's IP: the host's address for hostNetwork pods, the CNI
address otherwise). Bodies are strategic-merge patches of ``pods/<name>/status``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

from wmco_sandbox.winhost.kubelet import node as kubelet_node

__all__ = ["admission_failure", "pending_status_patch", "pod_status_patch"]


def admission_failure(
    pod: Mapping[str, Any], node_labels: Mapping[str, str]
) -> tuple[str, str] | None:
    """Kubelet admission of a pod bound to this node (a small subset of the real predicates).

    Args:
        pod: The pod (API dict).
        node_labels: The Node's current labels.

    Returns:
        ``(reason, message)`` for a rejected pod, or ``None`` when admitted.
    """
    spec = pod.get("spec") or {}
    os_name = (spec.get("os") or {}).get("name")
    if os_name and os_name != "windows":
        return (
            "PodOSNotSupported",
            f"Pod Predicate PodOSNotSupported failed: pod OS {os_name} does not match node OS windows",
        )
    selector: Mapping[str, str] = spec.get("nodeSelector") or {}
    if any(node_labels.get(k) != v for k, v in selector.items()):
        return ("NodeAffinity", "Pod Predicate NodeAffinity failed")
    return None


def _container_id(pod_uid: str, name: str) -> str:
    return "containerd://" + hashlib.sha256(f"{pod_uid}/{name}".encode()).hexdigest()


def _image_id(image: str) -> str:
    repo = image.rsplit("@", 1)[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _names(containers: Any) -> list[str]:
    return [str(c["name"]) for c in containers or []]


def pending_status_patch(pod: Mapping[str, Any], node_ip: str, now: dt.datetime) -> dict[str, Any]:
    """Build the status of a pod the kubelet could not start yet (no sandbox).

    Args:
        pod: The pod (API dict).
        node_ip: The node's InternalIP (``hostIP``).
        now: The time of this sync.

    Returns:
        ``{"status": {...}}``: phase Pending, containers waiting in ``ContainerCreating``.
    """
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    stamp = kubelet_node.time_str(now)
    names = _names(spec.get("containers"))
    unready = f"containers with unready status: [{' '.join(names)}]"

    def cond(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": stamp,
        }
        if reason:
            out["reason"], out["message"] = reason, message
        return out

    def waiting(container: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": container["name"],
            "image": str(container.get("image", "")),
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}},
        }

    return {
        "status": {
            "phase": "Pending",
            "conditions": [
                cond("PodReadyToStartContainers", "False"),
                cond("Initialized", "True"),
                cond("Ready", "False", "ContainersNotReady", unready),
                cond("ContainersReady", "False", "ContainersNotReady", unready),
                cond("PodScheduled", "True"),
            ],
            "hostIP": node_ip,
            "hostIPs": [{"ip": node_ip}],
            "startTime": old.get("startTime") or stamp,
            "containerStatuses": [waiting(c) for c in spec.get("containers") or []],
        }
    }


def pod_status_patch(
    pod: Mapping[str, Any],
    node_ip: str,
    now: dt.datetime,
    rejection: tuple[str, str] | None = None,
    pod_ip: str | None = None,
) -> dict[str, Any]:
    """Build the status patch of a pod the kubelet runs (or rejects at admission).

    Args:
        pod: The pod (API dict).
        node_ip: The node's InternalIP (``hostIP``).
        now: The time the containers started.
        rejection: ``(reason, message)`` from :func:`admission_failure`.
        pod_ip: The sandbox's IP (default: the node's).

    Returns:
        ``{"status": {...}}``.
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    uid = str(meta.get("uid", ""))
    stamp = kubelet_node.time_str(now)
    start = old.get("startTime") or stamp
    if rejection is not None:
        return {
            "status": {
                "phase": "Failed",
                "reason": rejection[0],
                "message": rejection[1],
                "startTime": start,
                "hostIP": node_ip,
                "hostIPs": [{"ip": node_ip}],
            }
        }
    address = pod_ip or node_ip

    def running(container: Mapping[str, Any]) -> dict[str, Any]:
        image = str(container.get("image", ""))
        return {
            "name": container["name"],
            "image": image,
            "imageID": _image_id(image),
            "containerID": _container_id(uid, str(container["name"])),
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": start}},
        }

    def completed(container: Mapping[str, Any]) -> dict[str, Any]:
        image = str(container.get("image", ""))
        cid = _container_id(uid, str(container["name"]))
        return {
            "name": container["name"],
            "image": image,
            "imageID": _image_id(image),
            "containerID": cid,
            "ready": True,
            "started": False,
            "restartCount": 0,
            "state": {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": start,
                    "finishedAt": start,
                    "containerID": cid,
                }
            },
        }

    conds = [
        {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp}
        for kind in (
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        )
    ]
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": conds,
        "hostIP": node_ip,
        "hostIPs": [{"ip": node_ip}],
        "podIP": address,
        "podIPs": [{"ip": address}],
        "startTime": start,
        "containerStatuses": [running(c) for c in spec.get("containers") or []],
    }
    # As the status manager's two-way merge patch: addresses of an earlier sandbox (a reboot
    # made a new one) are deleted from the list, which is merged by ``ip``.
    previous = ((pod.get("status") or {}).get("podIPs")) or []
    stale = [e.get("ip") for e in previous if isinstance(e, dict) and e.get("ip") != address]
    if stale:
        status["$setElementOrder/podIPs"] = [{"ip": address}]
        status["podIPs"] = [{"ip": address}, *({"$patch": "delete", "ip": ip} for ip in stale)]
    if spec.get("initContainers"):
        status["initContainerStatuses"] = [completed(c) for c in spec["initContainers"]]
    return {"status": status}
