"""The machine controller with the simulated cloud actuator: one simulated host per Machine.

Modelled on MAO ``pkg/controller/machine/controller.go`` (``machine-api.md`` §4) with an actuator
whose cloud is a :class:`~wmco_sandbox.machineapi.cloud.HostProvider`. One step per call, like a
controller-runtime reconcile; the caller (:class:`~wmco_sandbox.machineapi.loop.KeyedWorkers`) calls
again while a step asks for it.

Not deleting:

1. add the finalizer ``machine.machine.openshift.io``;
2. ``Failed`` is terminal: nothing more happens until deletion;
3. validate: without ``providerSpec.value``, event ``FailedValidate`` and nothing else (the
   ``cluster-api-cluster`` label is not required: there is no defaulting webhook to add it);
4. the instance exists (booted by this controller) → write providerID, labels (region, zone,
   instance type), the ``instance-state`` annotation, ``status.addresses`` (InternalIP = the host's
   address; InternalDNS and Hostname = the Machine name, so the cluster-machine-approver rules and
   the Windows computer name agree) and phase ``Provisioned``, or ``Running`` once nodelink has
   set ``status.nodeRef``;
5. provisioned before but the instance is unknown (deleted behind the Machine API's back, or the
   sandbox restarted) → ``Failed``, "can't find created instance";
6. otherwise phase ``Provisioning``, then boot: the user data comes from the Secret named in
   ``providerSpec.value.userDataSecret.name`` (key ``userData``, Machine namespace; none named:
   empty user data, as on a real cloud) and the Windows build from the image name. A missing
   Secret is an ``InvalidConfiguration``: phase ``Failed``, ``errorReason``/``errorMessage`` and a
   ``FailedCreate`` Warning event (a sandbox choice: MAO's AWS actuator retries instead); other
   boot errors are retried with backoff, the phase staying ``Provisioning``.

Deleting: phase ``Deleting``; wait for ``preDrain`` hooks; drain the Node through the Eviction API
(skipped without a nodeRef or with ``machine.openshift.io/exclude-node-draining``), recording the
``Drained`` condition; wait for ``preTerminate`` hooks; destroy the host; delete the Node; remove the
finalizer.

The cloud's view of which instances exist is this controller's memory, like a cloud API's: after a
restart, provisioned Machines are found missing and fail, as they would if their VMs had vanished.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any, Final

from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Node, Secret
from lightkube.types import PatchType

from wmco_sandbox.machineapi import cloud, conditions, drain, events, resources
from wmco_sandbox.machineapi.resources import Obj

log = logging.getLogger(__name__)

DRAIN_RETRY_SECONDS: Final = 1.0
PROVIDER_STATUS_KIND: Final = "SandboxMachineProviderStatus"

Again = bool
"""Whether the next step should follow at once."""


def is_provisioned(machine: Obj) -> bool:
    """Whether the Machine records an instance (a providerID or any address)."""
    return bool(
        resources.spec_of(machine).get("providerID")
        or resources.status_of(machine).get("addresses")
    )


def provider_value(machine: Obj) -> Mapping[str, Any] | None:
    """``spec.providerSpec.value``, or None when unset (not a mapping)."""
    value = (resources.spec_of(machine).get("providerSpec") or {}).get("value")
    return value if isinstance(value, Mapping) else None


def lifecycle_hooks(machine: Obj, stage: str) -> list[Obj]:
    """The ``preDrain`` or ``preTerminate`` hooks of the Machine."""
    hooks: list[Obj] = (resources.spec_of(machine).get("lifecycleHooks") or {}).get(stage) or []
    return hooks


def hook_conditions(
    machine: Obj, current: list[conditions.Condition]
) -> list[conditions.Condition]:
    """``current`` with ``Drainable`` and ``Terminable`` refreshed from the lifecycle hooks."""
    result = current
    for type_, stage in (
        (conditions.DRAINABLE, "preDrain"),
        (conditions.TERMINABLE, "preTerminate"),
    ):
        hooks = lifecycle_hooks(machine, stage)
        if hooks:
            names = ", ".join(str(h.get("name")) for h in hooks)
            new = conditions.make(
                type_,
                conditions.FALSE,
                reason="HookPresent",
                severity=conditions.SEVERITY_WARNING,
                message=f"{type_.removesuffix('able')} operation currently blocked by: {names}",
            )
        else:
            new = conditions.make(type_, conditions.TRUE)
        result = conditions.set_condition(result, new)
    return result


def addresses(machine_name: str, host: cloud.BootedHost) -> list[Obj]:
    """``status.addresses`` for a booted host (vSphere/Azure style: the name is the DNS name)."""
    return [
        {"type": "InternalIP", "address": host.address},
        {"type": "InternalDNS", "address": machine_name},
        {"type": "Hostname", "address": machine_name},
    ]


class MachineController:
    """Reconciles the Machines of one namespace against a :class:`~.cloud.HostProvider`.

    Args:
        client: An admin API client.
        namespace: The Machine API namespace.
        provider: Boots and destroys the simulated hosts.
    """

    def __init__(self, client: AsyncClient, namespace: str, provider: cloud.HostProvider) -> None:
        self._client = client
        self._namespace = namespace
        self._provider = provider
        self._instances: dict[str, cloud.BootedHost] = {}
        self._warned: set[tuple[str, str]] = set()

    @property
    def instances(self) -> Mapping[str, cloud.BootedHost]:
        """The instances this cloud runs, by Machine name."""
        return dict(self._instances)

    async def machine_names(self) -> list[str]:
        """Names of every Machine of the namespace (what a pass enqueues)."""
        return [
            str(m.metadata.name)
            async for m in self._client.list(resources.Machine, namespace=self._namespace)
            if m.metadata is not None
        ]

    async def reconcile(self, name: str) -> float | None:
        """Move the Machine ``name`` as far as it can go now.

        Returns:
            None when there is nothing to wait for, else seconds until it wants another look.
        """
        for _ in range(10):
            try:
                machine = resources.as_json(
                    await self._client.get(resources.Machine, name, namespace=self._namespace)
                )
            except ApiError as err:
                if err.status.code == 404:
                    return None
                raise
            if resources.is_deleting(machine):
                again, requeue = await self._step_delete(machine)
            else:
                again, requeue = await self._step(machine), None
            if not again:
                return requeue
        return 0.0

    # --- create / update ------------------------------------------------------------------------

    async def _step(self, machine: Obj) -> Again:
        name = resources.name_of(machine)
        meta = resources.meta(machine)
        if resources.MACHINE_FINALIZER not in (meta.get("finalizers") or []):
            await self._set_finalizers(
                machine, [*(meta.get("finalizers") or []), resources.MACHINE_FINALIZER]
            )
            return True
        status = resources.status_of(machine)
        if status.get("phase") == resources.PHASE_FAILED:
            return False
        value = provider_value(machine)
        if value is None:
            await self._warn_once(
                machine,
                "FailedValidate",
                "spec.providerSpec.value: Required value: must be provided",
            )
            return False
        host = self._instances.get(name)
        if host is not None:
            await self._update(machine, value, host)
            return False
        if is_provisioned(machine):
            await self._fail(
                machine,
                None,
                "can't find created instance",
                conditions.make(
                    conditions.INSTANCE_EXISTS,
                    conditions.FALSE,
                    reason="InstanceMissing",
                    severity=conditions.SEVERITY_WARNING,
                    message="Instance not found on provider",
                ),
            )
            return False
        not_created = conditions.make(
            conditions.INSTANCE_EXISTS,
            conditions.FALSE,
            reason="InstanceNotCreated",
            severity=conditions.SEVERITY_WARNING,
            message="Instance has not been created",
        )
        if not status.get("phase"):
            await self._patch_status(
                machine,
                {
                    "phase": resources.PHASE_PROVISIONING,
                    "conditions": hook_conditions(
                        machine, conditions.set_condition(status.get("conditions"), not_created)
                    ),
                },
            )
            return True
        try:
            await self._create(machine, value)
        except cloud.InvalidConfigurationError as err:
            await self._fail(machine, resources.INVALID_CONFIGURATION, str(err), not_created)
            await events.record(
                self._client,
                machine,
                type_=events.WARNING,
                reason="FailedCreate",
                message=f"InvalidConfiguration: {err}",
            )
            return False
        except Exception as err:
            await events.record(
                self._client,
                machine,
                type_=events.WARNING,
                reason="FailedCreate",
                message=f"CreateError: {err}",
            )
            raise
        await events.record(
            self._client,
            machine,
            type_=events.NORMAL,
            reason="Created",
            message=f"Created Machine {name}",
        )
        return True

    async def _user_data(self, value: Mapping[str, Any]) -> str:
        """The user data the instance boots with (AWS actuator ``getUserData``).

        No ``userDataSecret`` means no user data (the host boots, but nothing authorises the
        operator's key), as on a real cloud.

        Raises:
            InvalidConfigurationError: The Secret, or its ``userData`` key, is missing.
        """
        secret_name = cloud.user_data_secret_name(value)
        if secret_name is None:
            return ""
        qualified = f"{self._namespace}/{secret_name}"
        try:
            secret = await self._client.get(Secret, secret_name, namespace=self._namespace)
        except ApiError as err:
            if err.status.code == 404:
                raise cloud.InvalidConfigurationError(
                    f"user data secret {qualified} not found"
                ) from err
            raise
        data = secret.data or {}
        if resources.USER_DATA_KEY not in data:
            raise cloud.InvalidConfigurationError(
                f"user data secret {qualified} has no {resources.USER_DATA_KEY!r} key"
            )
        return base64.b64decode(data[resources.USER_DATA_KEY]).decode(errors="replace")

    async def _create(self, machine: Obj, value: Mapping[str, Any]) -> None:
        name = resources.name_of(machine)
        user_data = await self._user_data(value)
        build = cloud.windows_build(value)
        log.info("Machine %s: booting a Windows %s host", name, build)
        self._instances[name] = await self._provider.boot(
            name, user_data=user_data, windows_build=build
        )

    async def _update(self, machine: Obj, value: Mapping[str, Any], host: cloud.BootedHost) -> None:
        """Write what the cloud knows about the instance onto the Machine (MAO's ``Update``)."""
        name = resources.name_of(machine)
        where = cloud.placement(value)
        pid = cloud.provider_id(where.zone, host.instance_id)
        labels = {
            resources.INSTANCE_TYPE_LABEL: where.instance_type,
            resources.REGION_LABEL: where.region,
            resources.ZONE_LABEL: where.zone,
        }
        annotations = {resources.INSTANCE_STATE_ANNOTATION: "running"}
        current_labels = resources.labels_of(machine)
        current_annotations = resources.annotations_of(machine)
        if (
            resources.spec_of(machine).get("providerID") != pid
            or any(current_labels.get(k) != v for k, v in labels.items())
            or any(current_annotations.get(k) != v for k, v in annotations.items())
        ):
            await self._client.patch(
                resources.Machine,
                name,
                {
                    "metadata": {"labels": labels, "annotations": annotations},
                    "spec": {"providerID": pid},
                },
                namespace=self._namespace,
                patch_type=PatchType.MERGE,
            )
        status = resources.status_of(machine)
        provider_status = status.get("providerStatus") or {}
        exists = conditions.make(conditions.INSTANCE_EXISTS, conditions.TRUE)
        await self._patch_status(
            machine,
            {
                "providerID": pid,
                "addresses": addresses(name, host),
                "providerStatus": {
                    "apiVersion": resources.API_VERSION,
                    "kind": PROVIDER_STATUS_KIND,
                    "instanceId": host.instance_id,
                    "instanceState": "running",
                    "conditions": conditions.set_condition(
                        provider_status.get("conditions"),
                        conditions.make(
                            "MachineCreation",
                            conditions.TRUE,
                            reason="MachineCreationSucceeded",
                            message="Machine successfully created",
                        ),
                    ),
                },
                "conditions": hook_conditions(
                    machine, conditions.set_condition(status.get("conditions"), exists)
                ),
                "phase": resources.PHASE_RUNNING
                if status.get("nodeRef")
                else resources.PHASE_PROVISIONED,
                "errorReason": None,
                "errorMessage": None,
            },
        )

    async def _fail(
        self, machine: Obj, reason: str | None, message: str, instance: conditions.Condition
    ) -> None:
        name = resources.name_of(machine)
        log.warning("Machine %s: Failed: %s", name, message)
        if resources.annotations_of(machine).get(resources.INSTANCE_STATE_ANNOTATION) != "Unknown":
            await self._client.patch(
                resources.Machine,
                name,
                {"metadata": {"annotations": {resources.INSTANCE_STATE_ANNOTATION: "Unknown"}}},
                namespace=self._namespace,
                patch_type=PatchType.MERGE,
            )
        status = resources.status_of(machine)
        changes: Obj = {
            "phase": resources.PHASE_FAILED,
            "errorMessage": message,
            "conditions": hook_conditions(
                machine, conditions.set_condition(status.get("conditions"), instance)
            ),
        }
        if reason is not None:
            changes["errorReason"] = reason
        if status.get("providerStatus"):
            changes["providerStatus"] = {"instanceState": "Unknown"}
        await self._patch_status(machine, changes)

    # --- delete ---------------------------------------------------------------------------------

    async def _step_delete(self, machine: Obj) -> tuple[Again, float | None]:
        name = resources.name_of(machine)
        status = resources.status_of(machine)
        if status.get("phase") != resources.PHASE_DELETING:
            await self._patch_status(machine, {"phase": resources.PHASE_DELETING})
            return True, None
        finalizers = resources.meta(machine).get("finalizers") or []
        if resources.MACHINE_FINALIZER not in finalizers:
            return False, None
        if lifecycle_hooks(machine, "preDrain"):
            await self._patch_status(
                machine, {"conditions": hook_conditions(machine, status.get("conditions") or [])}
            )
            await self._warn_once(
                machine, "DrainBlocked", "Drain blocked by preDrain lifecycle hooks"
            )
            return False, None
        node_name = (status.get("nodeRef") or {}).get("name")
        if not conditions.is_true(status.get("conditions"), conditions.DRAINED):
            if not node_name or resources.EXCLUDE_DRAIN_ANNOTATION in resources.annotations_of(
                machine
            ):
                result = drain.DrainResult(True, "Node drain skipped")
            else:
                result = await drain.drain_step(self._client, str(node_name))
            drained = (
                conditions.make(conditions.DRAINED, conditions.TRUE, message=result.message)
                if result.done
                else conditions.make(
                    conditions.DRAINED,
                    conditions.FALSE,
                    reason="DrainError",
                    severity=conditions.SEVERITY_WARNING,
                    message=result.message,
                )
            )
            await self._patch_status(
                machine,
                {"conditions": conditions.set_condition(status.get("conditions"), drained)},
            )
            if not result.done:
                return False, DRAIN_RETRY_SECONDS
            return True, None
        if lifecycle_hooks(machine, "preTerminate"):
            await self._patch_status(
                machine, {"conditions": hook_conditions(machine, status.get("conditions") or [])}
            )
            return False, None
        if name in self._instances or is_provisioned(machine):
            await self._provider.destroy(name)
            self._instances.pop(name, None)
            await events.record(
                self._client,
                machine,
                type_=events.NORMAL,
                reason="Deleted",
                message=f"Deleted machine {name}",
            )
        if node_name:
            try:
                await self._client.delete(Node, str(node_name))
            except ApiError as err:
                if err.status.code != 404:
                    raise
        await self._set_finalizers(
            machine, [f for f in finalizers if f != resources.MACHINE_FINALIZER]
        )
        return False, None

    # --- writes ---------------------------------------------------------------------------------

    async def _set_finalizers(self, machine: Obj, finalizers: list[str]) -> None:
        """Replace the finalizers, guarded by the resourceVersion (like MAO's full ``Update``)."""
        meta = resources.meta(machine)
        await self._client.patch(
            resources.Machine,
            meta["name"],
            {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}},
            namespace=self._namespace,
            patch_type=PatchType.MERGE,
        )

    async def _patch_status(self, machine: Obj, changes: Obj) -> None:
        """Merge-patch the changed status fields, stamping ``lastUpdated`` when anything changed."""
        status = resources.status_of(machine)
        patch = {k: v for k, v in changes.items() if status.get(k) != v}
        if "providerStatus" in patch and isinstance(changes["providerStatus"], dict):
            merged = {**(status.get("providerStatus") or {}), **changes["providerStatus"]}
            if merged == status.get("providerStatus"):
                del patch["providerStatus"]
        if not patch:
            return
        patch["lastUpdated"] = conditions.now()
        await self._client.patch(
            resources.Machine.Status,
            resources.name_of(machine),
            {"status": patch},
            namespace=self._namespace,
            patch_type=PatchType.MERGE,
        )

    async def _warn_once(self, machine: Obj, reason: str, message: str) -> None:
        key = (str(resources.meta(machine).get("uid")), reason)
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning("Machine %s: %s: %s", resources.name_of(machine), reason, message)
        await events.record(
            self._client, machine, type_=events.WARNING, reason=reason, message=message
        )
