"""The simulated windows_exporter 0.30 as a service: TLS from its web config, /metrics, failures.

It runs from the exact command line the operator declares (wmco.windows.services), serves
HTTPS at the host's address with a certificate the operator's CA code issues, and the body
parses with prometheus_client's parser into windows_exporter's real names and labels. A bad
web config, flag or collector stops the service with exporter-toolkit's / kingpin's words; plain
HTTP gets Go's answer; the port answers only while the firewall allows 9182; a rewritten
certificate is served on the next connection without a restart.
"""

from __future__ import annotations

import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from winhost_helpers import wait_for

from exporter_helpers import https_get, plain_get, samples
from wmco import settings
from wmco.cluster import exporterca
from wmco.windows import exporterconfig, layout, services
from wmco_sandbox.winhost.agents import exporter, exportermetrics
from wmco_sandbox.winhost.core.scm import State
from wmco_sandbox.winhost.host import WindowsHost

PORT = 9182
LOG = layout.WINDOWS_EXPORTER_LOG


def operator_command_line() -> str:
    specs = services.node_services(
        services.NodeServiceOptions(network_profile=settings.NetworkProfile.HOSTPROCESS)
    )
    return next(s for s in specs if s.name == services.WINDOWS_EXPORTER).command_line


def issue(host: WindowsHost, ca: exporterca.CertificateAuthority) -> exporterca.ServingCertificate:
    return exporterca.issue_serving(ca, host.facts.hostname, [host.address])


async def install(
    host: WindowsHost,
    *,
    web_config: bytes | None = exporterconfig.web_config().encode(),
    serving: exporterca.ServingCertificate | None = None,
    command_line: str | None = None,
) -> None:
    host.machine.program_factories["windows_exporter"] = exporter.factory_with(poll=0.02)
    disk = host.machine.disk
    for folder in ("C:\\k", layout.WINDOWS_EXPORTER_DIR, "C:\\var\\log\\windows_exporter"):
        disk.mkdir(folder)
    disk.write_file(layout.WINDOWS_EXPORTER_EXE, b"MZ windows_exporter")
    if web_config is not None:
        disk.write_file(layout.WINDOWS_EXPORTER_WEB_CONFIG, web_config)
    if serving is not None:
        disk.write_file(layout.WINDOWS_EXPORTER_CERT, serving.cert_pem)
        disk.write_file(layout.WINDOWS_EXPORTER_KEY, serving.key_pem)
    line = command_line or operator_command_line()
    for command in (
        f"sc.exe create 'windows_exporter' binPath= '{line}' start= auto",
        "sc.exe start 'windows_exporter'",
    ):
        result = await host.run(command + "; exit $LASTEXITCODE", shell="powershell")
        assert result.code == 0, result.stdout + result.stderr


def process(host: WindowsHost) -> exporter.SimulatedWindowsExporter | None:
    svc = host.machine.scm.get("windows_exporter")
    proc = svc.process if svc is not None else None
    return proc if isinstance(proc, exporter.SimulatedWindowsExporter) else None


def service_log(host: WindowsHost) -> str:
    return "\n".join(host.machine.service_log("windows_exporter"))


@pytest.fixture
def ca() -> exporterca.CertificateAuthority:
    return exporterca.generate_ca()


async def serving(host: WindowsHost) -> None:
    await wait_for(lambda: (p := process(host)) is not None and p.listening, timeout=10)


async def test_serves_metrics_over_https_with_the_real_names(
    host: WindowsHost, ca: exporterca.CertificateAuthority
) -> None:
    await install(host, serving=issue(host, ca))
    await serving(host)

    response = await https_get(host.address, PORT, ca.bundle_pem)

    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.body.decode()
    cpu = samples(text, "windows_cpu_time_total")
    assert {labels["mode"] for labels, _ in cpu} == {
        "dpc",
        "idle",
        "interrupt",
        "privileged",
        "user",
    }
    assert {labels["core"] for labels, _ in cpu} == {"0,0", "0,1"}
    ((os_info, value),) = samples(text, "windows_os_info")
    assert value == 1 and os_info["product"] == "Windows Server 2022 Datacenter"
    assert os_info["build_number"] == "20348" and os_info["version"] == "10.0.20348"
    state = {labels["state"]: v for labels, v in samples(text, "windows_service_state")
             if labels["name"] == "windows_exporter"}  # fmt: skip
    assert state["running"] == 1 and state["stopped"] == 0 and len(state) == 7
    assert samples(text, "windows_memory_physical_total_bytes")[0][1] == 8 * 1024**3
    assert samples(text, "windows_container_count") == [({}, 0.0)]
    success = {
        labels["collector"]: v for labels, v in samples(text, "windows_exporter_collector_success")
    }
    assert success == dict.fromkeys(exporterconfig.COLLECTORS, 1.0)
    assert (samples(text, "windows_os_hostname")[0][0]["hostname"]) == host.facts.hostname
    # The exporter's own log says what the real one says at start.
    log = (host.machine.disk.read_file(LOG) or b"").decode()
    assert (
        "Enabled collectors: cpu, logical_disk, net, os, service, system, container, memory, cpu_info"
        in log
    )
    assert 'msg="TLS is enabled."' in log


async def test_plain_http_gets_gos_answer(
    host: WindowsHost, ca: exporterca.CertificateAuthority
) -> None:
    await install(host, serving=issue(host, ca))
    await serving(host)

    raw = await plain_get(host.address, PORT)

    assert (
        raw == b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    )


async def test_a_certificate_from_another_ca_is_refused_by_the_client(
    host: WindowsHost, ca: exporterca.CertificateAuthority
) -> None:
    await install(host, serving=issue(host, exporterca.generate_ca()))
    await serving(host)

    with pytest.raises(ssl.SSLCertVerificationError):
        await https_get(host.address, PORT, ca.bundle_pem)


async def test_a_rewritten_certificate_is_served_on_the_next_connection(
    host: WindowsHost, ca: exporterca.CertificateAuthority
) -> None:
    await install(host, serving=issue(host, ca))
    await serving(host)
    first = await https_get(host.address, PORT, ca.bundle_pem)
    pid = host.machine.scm.require("windows_exporter").pid

    renewed = issue(host, ca)
    host.machine.disk.write_file(layout.WINDOWS_EXPORTER_CERT, renewed.cert_pem)
    host.machine.disk.write_file(layout.WINDOWS_EXPORTER_KEY, renewed.key_pem)
    second = await https_get(host.address, PORT, ca.bundle_pem)

    assert first.peer_der != second.peer_der
    assert second.peer_der == x509.load_pem_x509_certificate(renewed.cert_pem).public_bytes(
        Encoding.DER
    )
    assert host.machine.scm.require("windows_exporter").pid == pid


async def test_it_listens_only_while_the_firewall_allows_9182(
    host: WindowsHost, ca: exporterca.CertificateAuthority
) -> None:
    await install(host, serving=issue(host, ca))
    await serving(host)
    rules = host.machine.firewall
    rule = next(r for r in rules if r.local_port == "9182")

    rule.enabled = False
    await wait_for(lambda: not process(host).listening, timeout=5)  # type: ignore[union-attr]
    with pytest.raises(OSError):
        await https_get(host.address, PORT, ca.bundle_pem)

    rule.enabled = True
    await serving(host)
    assert (await https_get(host.address, PORT, ca.bundle_pem)).status == 200


KEY_MISMATCH = "failed to load X509KeyPair: tls: private key does not match public key"
BAD_CONFIGS = [
    (
        b"tls_server_config:\n  cert_file: 'tls.crt'\n  keyfile: 'tls.key'\n",
        'err="yaml: unmarshal errors:\\n  line 3: field keyfile not found in type web.TLSConfig"',
    ),
    (
        b"tls_server_config: yes\n",
        "line 1: cannot unmarshal !!bool `yes` into web.TLSConfig",
    ),
    (
        b"tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_version: TLS9\n",
        'err="unknown TLS version: TLS9"',
    ),
    (
        b"tls_server_config:\n  cert_file: 'C:\\k\\windows_exporter\\missing.crt'\n  key_file: tls.key\n",
        "failed to read cert_file (C:\\\\k\\\\windows_exporter\\\\missing.crt): open "
        "C:\\\\k\\\\windows_exporter\\\\missing.crt: The system cannot find the file specified.",
    ),
    (b"tls_server_config:\n  cert_file: tls.crt\n", 'err="missing one of key or key_file"'),
    (
        b"tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_auth_type: Maybe\n",
        'err="Invalid ClientAuth: Maybe"',
    ),
    (
        b"tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nhttp_server_config:\n  headers:\n    X-Frame-Options: allow\n",
        "invalid value for X-Frame-Options. Expected one of:",
    ),
]


@pytest.mark.parametrize(("config", "text"), BAD_CONFIGS)
async def test_a_bad_web_config_stops_it_with_exporter_toolkits_words(
    host: WindowsHost, ca: exporterca.CertificateAuthority, config: bytes, text: str
) -> None:
    await install(host, web_config=config, serving=issue(host, ca))

    await wait_for(lambda: host.machine.scm.require("windows_exporter").state is State.STOPPED)
    assert 'msg="Failed to start windows_exporter"' in service_log(host)
    assert text in service_log(host), service_log(host)
    assert text.encode() in (host.machine.disk.read_file(LOG) or b"")


async def test_a_missing_web_config_stops_it(
    host: WindowsHost, ca: exporterca.CertificateAuthority
) -> None:
    await install(host, web_config=None, serving=issue(host, ca))

    await wait_for(lambda: host.machine.scm.require("windows_exporter").state is State.STOPPED)
    assert (
        "open C:\\\\k\\\\windows_exporter\\\\web-config.yml: The system cannot find the file specified."
        in service_log(host)
    )


async def test_a_key_of_another_certificate_stops_it(
    host: WindowsHost, ca: exporterca.CertificateAuthority
) -> None:
    first, second = issue(host, ca), issue(host, ca)
    mixed = exporterca.ServingCertificate(first.cert_pem, second.key_pem, first.record)
    await install(host, serving=mixed)

    await wait_for(lambda: host.machine.scm.require("windows_exporter").state is State.STOPPED)
    assert KEY_MISMATCH in service_log(host)


async def test_an_empty_web_config_serves_plain_http(host: WindowsHost) -> None:
    await install(host, web_config=b"")
    await serving(host)

    raw = await plain_get(host.address, PORT)

    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert b"windows_cpu_time_total{" in raw


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        ("--web.config", "unknown long flag '--web.config'"),
        ("--collectors.enabled=cpu,gpu", "unknown collector gpu"),
        ("--telemetry.path", "expected argument for flag '--telemetry.path'"),
    ],
)
async def test_a_bad_command_line_fails_the_start(host: WindowsHost, extra: str, text: str) -> None:
    await install(host, command_line=f"{operator_command_line()} {extra}")

    svc = host.machine.scm.require("windows_exporter")
    assert svc.state is State.STOPPED and svc.exit_code == 1067
    assert text in service_log(host)


def view(**changes: object) -> exportermetrics.HostView:
    base = dict(
        now=10_000.0, boot_time=6_400.0, hostname="win-a", address="198.18.0.2",
        product="Windows Server 2019 Datacenter", build="17763", revision=6893,
        disk_size=100 * 1024**3, disk_used=20 * 1024**3, services=(),
        containers=(("ab" * 32, 9_000.0),), hns_endpoints=1,
    )  # fmt: skip
    base.update(changes)
    return exportermetrics.HostView(**base)  # type: ignore[arg-type]


def test_container_series_carry_the_containerd_id_and_fail_without_hns_endpoints() -> None:
    logged: list[str] = []
    ok = exportermetrics.render(
        exportermetrics.collect(view(), ["container"], "0.30.5", logged.append)
    )
    ((labels, seconds),) = samples(ok, "windows_container_cpu_usage_seconds_total")
    assert labels == {"container_id": "containerd://" + "ab" * 32} and seconds == pytest.approx(
        10.0
    )
    assert samples(ok, "windows_exporter_collector_success") == [({"collector": "container"}, 1.0)]

    failed = exportermetrics.render(
        exportermetrics.collect(view(hns_endpoints=0), ["container"], "0.30.5", logged.append)
    )
    assert samples(failed, "windows_exporter_collector_success") == [
        ({"collector": "container"}, 0.0)
    ]
    assert samples(failed, "windows_container_count") == [({}, 1.0)]
    assert "no network stats for containers to collect" in logged[-1]


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (1.5e9, "1.5e+09"), (1234567.0, "1.234567e+06"), (100000.0, "100000"),
     (0.0012, "0.0012"), (1e-05, "1e-05"), (8589934592.0, "8.589934592e+09"), (-2.5, "-2.5")],
)  # fmt: skip
def test_values_are_written_as_go_writes_them(value: float, text: str) -> None:
    assert exportermetrics.go_float(value) == text
