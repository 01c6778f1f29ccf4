"""The parsers of the host's answers: sc.exe blocks, hashes, features, HNS JSON.

The sample outputs are the shapes documented in shared/reference/windows-commands.md and
windows-networking.md §5 (CRLF kept where the host would send it, to prove the parsers tolerate
it).
"""

from __future__ import annotations

import pytest

from wmco.windows import answers

SC_QUERY_RUNNING = (
    "\r\nSERVICE_NAME: kubelet \r\n"
    "        TYPE               : 10  WIN32_OWN_PROCESS  \r\n"
    "        STATE              : 4  RUNNING \r\n"
    "                                (STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)\r\n"
    "        WIN32_EXIT_CODE    : 0  (0x0)\r\n"
    "        SERVICE_EXIT_CODE  : 0  (0x0)\r\n"
    "        CHECKPOINT         : 0x0\r\n"
    "        WAIT_HINT          : 0x0\r\n"
)

SC_QUERY_STOPPED = """
SERVICE_NAME: containerd
        TYPE               : 10  WIN32_OWN_PROCESS
        STATE              : 1  STOPPED
        WIN32_EXIT_CODE    : 1077  (0x435)
        SERVICE_EXIT_CODE  : 0  (0x0)
        CHECKPOINT         : 0x0
        WAIT_HINT          : 0x0
"""

SC_QC = """[SC] QueryServiceConfig SUCCESS

SERVICE_NAME: kubelet
        TYPE               : 10  WIN32_OWN_PROCESS
        START_TYPE         : 2   AUTO_START
        ERROR_CONTROL      : 1   NORMAL
        BINARY_PATH_NAME   : C:\\k\\kubelet.exe --config=C:\\k\\kubelet.conf
        LOAD_ORDER_GROUP   :
        TAG                : 0
        DISPLAY_NAME       : kubelet
        DEPENDENCIES       : containerd
                           : otherdep
        SERVICE_START_NAME : LocalSystem
"""

SC_QC_NO_DEPS = SC_QC.replace(
    "DEPENDENCIES       : containerd\n                           : otherdep",
    "DEPENDENCIES       : ",
).replace("2   AUTO_START", "3   DEMAND_START")


def test_parse_sc_query_running_with_crlf_and_trailing_spaces() -> None:
    status = answers.parse_sc_query(SC_QUERY_RUNNING)
    assert status == answers.ServiceStatus("kubelet", answers.ServiceState.RUNNING, 0)


def test_parse_sc_query_stopped() -> None:
    status = answers.parse_sc_query(SC_QUERY_STOPPED)
    assert status.state is answers.ServiceState.STOPPED
    assert status.win32_exit_code == 1077


def test_parse_sc_qc() -> None:
    config = answers.parse_sc_qc(SC_QC)
    assert config.name == "kubelet"
    assert config.start_type is answers.StartType.AUTO
    assert config.binary_path == "C:\\k\\kubelet.exe --config=C:\\k\\kubelet.conf"
    assert config.dependencies == ("containerd", "otherdep")
    assert config.display_name == "kubelet"


def test_parse_sc_qc_without_dependencies() -> None:
    config = answers.parse_sc_qc(SC_QC_NO_DEPS)
    assert config.dependencies == ()
    assert config.start_type is answers.StartType.DEMAND


@pytest.mark.parametrize(
    "output",
    [
        "[SC] OpenService FAILED 1060:\n\nThe specified service does not exist.\n\n",
        "",
        "SERVICE_NAME: x\n        STATE              : 9  WEIRD\n",
    ],
)
def test_parse_sc_query_rejects_other_output(output: str) -> None:
    with pytest.raises(answers.CommandOutputError):
        answers.parse_sc_query(output)


def test_parse_file_hash() -> None:
    upper = "EF647E7763E3F666F3A5B186F8273B7D124D3096DCEACF964C66FA7855E2E109"
    assert answers.parse_file_hash(upper + "\r\n") == upper.lower()
    assert answers.parse_file_hash("\r\n") is None
    with pytest.raises(answers.CommandOutputError):
        answers.parse_file_hash("Get-FileHash : Cannot find path\n")


def test_parse_hostname_and_build() -> None:
    assert answers.parse_hostname("WIN-FOQJI0KAEKI\r\n") == "WIN-FOQJI0KAEKI"
    assert answers.parse_node_name("WIN-FOQJI0KAEKI\r\n") == "win-foqji0kaeki"
    assert answers.parse_os_build("20348\r\n") == 20348
    with pytest.raises(answers.CommandOutputError):
        answers.parse_os_build("not a build")


FEATURE = """
FeatureName      : Containers
DisplayName      : Containers
Description      : Provides services and tools to create and manage Windows Server Containers.
RestartRequired  : Possible
State            : EnablePending
CustomProperties :


"""


def test_parse_feature_state_does_not_confuse_pending_with_enabled() -> None:
    assert answers.parse_feature_state(FEATURE) is answers.FeatureState.ENABLE_PENDING
    enabled = FEATURE.replace("EnablePending", "Enabled")
    assert answers.parse_feature_state(enabled) is answers.FeatureState.ENABLED


def test_parse_restart_needed() -> None:
    output = (
        "\nSuccess Restart Needed Exit Code      Feature Result\n"
        "------- -------------- ---------      --------------\n"
        "True    Yes            SuccessRest... {Containers}\n"
        "WARNING: You must restart this server to finish the installation process.\n"
    )
    assert answers.parse_restart_needed(output) is True
    assert answers.parse_restart_needed(output.replace("Yes ", "No  ")) is False


# --- HNS ----------------------------------------------------------------------------------------

OVERLAY_ID = "6A3E5C31-2B1F-4D8E-9F0A-1C2D3E4F5A6B"
BASE_ID = "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"

NETWORKS = (
    '[{"ActivityId":"A1B2C3D4-0000-0000-0000-000000000001","AdditionalParams":{},'
    '"CurrentEndpointCount":0,"DrMacAddress":"00-15-5D-52-C0-00","Extensions":[],"Flags":0,'
    f'"Health":{{"LastErrorCode":0,"LastUpdateTime":133000000000000000}},"ID":"{BASE_ID}",'
    '"IPv6":false,"LayeredOn":"11111111-2222-3333-4444-555555555555","MacPools":[],'
    '"ManagementIP":"10.0.0.5","Name":"BaseOVNKubernetesHybridOverlayNetwork",'
    '"NetworkAdapterName":"Ethernet","Policies":[],"Resources":{},"State":1,'
    '"Subnets":[{"AddressPrefix":"100.64.0.0/30","GatewayAddress":"100.64.0.1","ID":"x",'
    '"IpSubnets":[{"IpAddressPrefix":"100.64.0.0/30"}],"ObjectType":5,'
    '"Policies":[{"Type":"VSID","VSID":4098}],"State":0}],"TotalEndpoints":0,"Type":"Overlay",'
    '"Version":38654705669},'
    '{"ActivityId":"A1B2C3D4-0000-0000-0000-000000000002","DrMacAddress":"00-15-5D-52-C0-01",'
    f'"Flags":8,"ID":"{OVERLAY_ID}","ManagementIP":"10.0.0.5",'
    '"Name":"OVNKubernetesHybridOverlayNetwork","Policies":[{"Type":"HostRoute"}],'
    '"Subnets":[{"AddressPrefix":"10.132.0.0/24","GatewayAddress":"10.132.0.1",'
    '"Policies":[{"Type":"VSID","VSID":4097}]}],"Type":"Overlay"}]\r\n'
)


def test_parse_hns_networks_reads_the_fields_the_operator_uses() -> None:
    base, overlay = answers.parse_hns_networks(NETWORKS)
    assert overlay == answers.HnsNetwork(
        id=OVERLAY_ID,
        name="OVNKubernetesHybridOverlayNetwork",
        type="Overlay",
        management_ip="10.0.0.5",
        address_prefix="10.132.0.0/24",
        gateway_address="10.132.0.1",
        dr_mac_address="00-15-5D-52-C0-01",
    )
    assert base.name == "BaseOVNKubernetesHybridOverlayNetwork"
    assert base.address_prefix == "100.64.0.0/30"


@pytest.mark.parametrize("empty", ["[]", "[]\r\n", "\ufeff[]\n"])
def test_no_network_is_an_empty_array(empty: str) -> None:
    assert answers.parse_hns_networks(empty) == ()
    assert answers.parse_hns_endpoints(empty) == ()


def test_network_without_subnets_or_management_ip() -> None:
    (nat,) = answers.parse_hns_networks(
        f'[{{"ID":"{BASE_ID}","Name":"nat","Type":"NAT","Subnets":[],"ManagementIP":""}}]'
    )
    assert nat.address_prefix is None and nat.management_ip is None


def test_hostile_names_are_kept_verbatim_and_never_matter() -> None:
    hostile = "x'; Remove-Item -Recurse C:\\\\ ; '\\u2019\\n$(evil)"
    (network,) = answers.parse_hns_networks(
        f'[{{"ID":"{BASE_ID}","Name":"{hostile}","Type":"Overlay"}}]'
    )
    assert network.name == "x'; Remove-Item -Recurse C:\\ ; '\u2019\n$(evil)"
    (endpoint,) = answers.parse_hns_endpoints(f'[{{"ID":"{BASE_ID}","Name":"{hostile}"}}]')
    assert endpoint.name == network.name and endpoint.ip_address is None


ENDPOINTS = (
    '[{"ID":"C0FFEE00-1111-2222-3333-444455556666","Name":"VIPEndpoint",'
    f'"VirtualNetwork":"{OVERLAY_ID}","VirtualNetworkName":"OVNKubernetesHybridOverlayNetwork",'
    '"IPAddress":"10.132.0.2","MacAddress":"00-15-5D-CD-BE-47","PrefixLength":24,'
    '"GatewayAddress":"10.132.0.1","State":2,"IsRemoteEndpoint":false,"Policies":[],'
    '"Resources":{},"SharedContainers":[],"Version":38654705669}]'
)


def test_parse_hns_endpoints() -> None:
    assert answers.parse_hns_endpoints(ENDPOINTS) == (
        answers.HnsEndpoint(
            id="C0FFEE00-1111-2222-3333-444455556666",
            name="VIPEndpoint",
            virtual_network=OVERLAY_ID,
            ip_address="10.132.0.2",
        ),
    )


@pytest.mark.parametrize(
    "output",
    [
        "",
        "Get-HnsNetwork : The term 'Get-HnsNetwork' is not recognized",
        '{"ID":"x","Name":"n","Type":"Overlay"}',
        "[1, 2]",
        '[{"Name":"n","Type":"Overlay"}]',
        '[{"ID":7,"Name":"n","Type":"Overlay"}]',
        '[{"ID":"x","Name":"n","Type":"Overlay","Subnets":["10.0.0.0/24"]}]',
    ],
)
def test_other_network_answers_are_refused(output: str) -> None:
    with pytest.raises(answers.CommandOutputError):
        answers.parse_hns_networks(output)


def test_endpoint_without_an_id_is_refused() -> None:
    with pytest.raises(answers.CommandOutputError, match="no ID"):
        answers.parse_hns_endpoints('[{"Name":"VIPEndpoint"}]')
