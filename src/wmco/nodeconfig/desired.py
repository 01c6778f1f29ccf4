"""What a configured node must hold: its files and its declared services (pure).

The configure flow (:mod:`wmco.nodeconfig.configure`) and the drift probe
(:mod:`wmco.nodeconfig.probe`) compute the desired state with these same functions, so a probe
can only report as different what the flow would change.
"""

from __future__ import annotations

from wmco.cluster import clientca
from wmco.nodeconfig import bootstrap, hostfiles
from wmco.nodeconfig.instance import Inputs, Instance
from wmco.windows import configfiles, kubelet, services, transfer


def node_files(
    inputs: Inputs,
    instance: Instance,
    *,
    build: int,
    endpoint: bootstrap.ClusterEndpoint,
    token: bootstrap.Token | None,
    hyperv_handlers: tuple[str, ...] = (),
) -> tuple[transfer.Content, ...]:
    """The payload and generated files of a node (pure; shared with the drift probe).

    Raises:
        ValueError: The kubelet client CA is unusable right now (its message says why).
    """
    settings_ = inputs.settings
    if not isinstance(inputs.client_ca, clientca.ClientCa):
        raise ValueError(inputs.client_ca.message)
    generated = hostfiles.generated_files(
        hostfiles.NodeFiles(
            profile=settings_.network_profile,
            sandbox_image=configfiles.pause_image(build, settings_.pause_image),
            endpoint=endpoint,
            token=token,
            client_ca=inputs.client_ca,
            kubelet=kubelet.KubeletConfigInputs(
                cluster_dns=(settings_.cluster_dns_address,),
                cluster_domain=settings_.cluster_domain,
                provider_id=instance.provider_id,
            ),
            hyperv_handlers=hyperv_handlers,
        )
    )
    return (*hostfiles.payload_files(inputs.payload), *generated)


def services_of(
    inputs: Inputs, instance: Instance, node_name: str, api_server_url: str
) -> tuple[services.ServiceSpec, ...]:
    """The node's declared services (pure; shared with the drift probe).

    Raises:
        ServiceSpecError: A value makes an invalid service argument.
    """
    settings_ = inputs.settings
    return services.node_services(
        services.NodeServiceOptions(
            network_profile=settings_.network_profile,
            node_name=node_name,
            node_ip=instance.node_ip,
            api_server_url=api_server_url,
            debug=settings_.debug,
        )
    )


def left_stopped(inputs: Inputs) -> tuple[str, ...]:
    """Declared services no pass starts right now: windows_exporter without an exporter CA."""
    return () if inputs.exporter_ca is not None else (services.WINDOWS_EXPORTER,)
