"""The drift probe's one command and the client-certificate read, run by the strict host.

The simulated host parses every statement of the operator's exact forms
(:func:`wmco.windows.commands.drift_probe`, :func:`wmco.windows.commands.certificate_block`)
and the operator's parsers read its answers: a missing file is left out of the hash list, a
missing service answers its 1060 blocks, and the private key of the kubelet's PEM never
leaves the host.
"""

from __future__ import annotations

import hashlib

import asyncssh
from winhost_helpers import connect, enable_containers

from wmco.windows import commands, probeanswers
from wmco_sandbox import pki
from wmco_sandbox.winhost.host import WindowsHost


async def test_probe_answer_is_one_complete_parseable_report(
    host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    await enable_containers(host)
    host.machine.disk.mkdir("C:\\k")
    host.machine.disk.write_file("C:\\k\\a.conf", b"alpha")
    host.machine.scm.create("wmco-test", "C:\\k\\a.exe --flag", start_type="auto")
    command = commands.drift_probe(
        ("wmco-test", "kubelet"), ("C:\\k\\a.conf", "C:\\k\\missing.conf"), hns=True
    )
    conn = await connect(host, client_key)
    try:
        result = await conn.run(command, check=False)
    finally:
        conn.close()
    assert isinstance(result.stdout, str)
    assert "is not recognized" not in str(result.stderr)
    report = probeanswers.parse_probe(result.stdout)
    assert report.build == int(host.facts.windows_build.rsplit(".", 1)[-1])
    test_service = report.services["wmco-test"]
    assert test_service.config is not None
    assert test_service.config.binary_path == "C:\\k\\a.exe --flag"
    assert test_service.state is not None and test_service.state.name == "STOPPED"
    assert report.services["kubelet"].config is None  # not installed: its 1060 blocks
    assert report.hashes == {"c:\\k\\a.conf": hashlib.sha256(b"alpha").hexdigest()}
    assert report.networks == () and report.endpoints == ()


async def test_certificate_block_reads_the_certificate_and_not_the_key(
    host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    ca = pki.CertificateAuthority("drift-test")
    pair = ca.pair
    host.machine.disk.mkdir("C:\\var\\lib\\kubelet\\pki")
    host.machine.disk.write_file(
        "C:\\var\\lib\\kubelet\\pki\\kubelet-client-current.pem", pair.cert_pem + pair.key_pem
    )
    conn = await connect(host, client_key)
    try:
        present = await conn.run(
            commands.certificate_block("C:\\var\\lib\\kubelet\\pki\\kubelet-client-current.pem"),
            check=False,
        )
        absent = await conn.run(
            commands.certificate_block("C:\\var\\lib\\kubelet\\pki\\nothing.pem"), check=False
        )
    finally:
        conn.close()
    assert "PRIVATE KEY" not in str(present.stdout)
    found = probeanswers.parse_certificate(str(present.stdout))
    assert found is not None and found.not_after > found.not_before
    assert probeanswers.parse_certificate(str(absent.stdout)) is None


async def test_the_configure_flows_look_adds_identity_certificate_and_globs(
    host: WindowsHost, client_key: asyncssh.SSHKey
) -> None:
    # Issue 12 §3: the first exec of the configure flow is this one form.
    pair = pki.CertificateAuthority("look-test").pair
    host.machine.disk.mkdir("C:\\var\\lib\\kubelet\\pki")
    host.machine.disk.write_file(
        "C:\\var\\lib\\kubelet\\pki\\kubelet-client-current.pem", pair.cert_pem + pair.key_pem
    )
    host.machine.disk.mkdir("C:\\var\\lib\\cni\\networks\\n")
    host.machine.disk.write_file("C:\\var\\lib\\cni\\networks\\n\\10.1.0.2", b"VIPEndpoint")
    command = commands.drift_probe(
        ("kubelet",),
        ("C:\\k\\missing.conf",),
        hns=False,
        identity=True,
        certificate="C:\\var\\lib\\kubelet\\pki\\kubelet-client-current.pem",
        globs=("C:\\var\\lib\\cni\\networks\\n\\*", "C:\\var\\lib\\nothing\\*"),
    )
    conn = await connect(host, client_key)
    try:
        result = await conn.run(command, check=False)
    finally:
        conn.close()
    assert result.exit_status == 0 and "PRIVATE KEY" not in str(result.stdout)
    report = probeanswers.parse_probe(str(result.stdout))
    assert report.node_name == host.facts.hostname.lower()
    assert report.feature is not None and report.feature.value == "Disabled"
    assert report.certificate is not None
    assert report.hashes == {
        "c:\\var\\lib\\cni\\networks\\n\\10.1.0.2": hashlib.sha256(b"VIPEndpoint").hexdigest()
    }
