"""Requesting a certificate through the CSR API, as client-go's ``csr.RequestCertificate`` does.

One attempt = POST a ``certificates.k8s.io/v1`` CertificateSigningRequest (``generateName:
csr-``), then watch it by name until it is Approved *and* carries ``status.certificate``. Nobody
in the sandbox approves automatically: the operator (or a test) does, and the
kube-controller-manager signs. A Denied or Failed condition, a changed UID or the CSR's deletion
end the attempt with :class:`CertificateRequestError`; the caller retries with a fresh key after
a backoff, exactly like the certificate manager. Timeouts are the caller's business (wrap the
call in ``asyncio.timeout``), because the kubelet's 5-minute exit rule spans attempts.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

from lightkube import AsyncClient
from lightkube.models.certificates_v1 import CertificateSigningRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.certificates_v1 import CertificateSigningRequest

__all__ = ["CertificateRequestError", "create_csr", "request_certificate", "wait_for_certificate"]


class CertificateRequestError(Exception):
    """The CSR was denied, failed, replaced or deleted; the attempt is over."""


def _condition(csr: CertificateSigningRequest, kind: str) -> Any:
    status = csr.status
    for cond in status.conditions if status and status.conditions else []:
        if cond.type == kind:
            return cond
    return None


def _issued(csr: CertificateSigningRequest) -> bytes | None:
    """Return the PEM certificate of an approved, signed CSR (``None`` while pending).

    Raises:
        CertificateRequestError: When the CSR is denied or failed.
    """
    denied = _condition(csr, "Denied")
    if denied is not None:
        raise CertificateRequestError(
            f"certificate signing request is denied, reason: {denied.reason}, message: "
            f"{denied.message}"
        )
    failed = _condition(csr, "Failed")
    if failed is not None:
        raise CertificateRequestError(
            f"certificate signing request failed, reason: {failed.reason}, message: {failed.message}"
        )
    if _condition(csr, "Approved") is None or not csr.status or not csr.status.certificate:
        return None
    return base64.b64decode(csr.status.certificate)


async def create_csr(
    client: AsyncClient, csr_pem: bytes, *, signer: str, usages: Sequence[str]
) -> tuple[str, str]:
    """POST a CSR named ``csr-<random>``; return its name and UID.

    Raises:
        lightkube.ApiError: When the API refuses it (e.g. 401/403).
        httpx2.HTTPError: On transport errors.
    """
    created = await client.create(
        CertificateSigningRequest(
            metadata=ObjectMeta(generateName="csr-"),
            spec=CertificateSigningRequestSpec(
                request=base64.b64encode(csr_pem).decode(),
                signerName=signer,
                usages=list(usages),
            ),
        )
    )
    assert created.metadata is not None and created.metadata.name is not None
    return created.metadata.name, str(created.metadata.uid)


async def wait_for_certificate(client: AsyncClient, name: str, uid: str) -> bytes:
    """Watch a CSR by name until it is approved and signed (``csr.WaitForCertificate``).

    Returns:
        The issued certificate chain, PEM.

    Raises:
        CertificateRequestError: On denial, failure, UID change or deletion.
        lightkube.ApiError: When the API refuses the watch.
        httpx2.HTTPError: On transport errors.
    """
    async for event, csr in client.watch(CertificateSigningRequest, fields={"metadata.name": name}):
        if csr.metadata is None or csr.metadata.name != name:
            continue
        if event == "DELETED":
            raise CertificateRequestError(f'csr "{name}" was deleted')
        if csr.metadata.uid != uid:
            raise CertificateRequestError(f'csr "{name}" changed UIDs')
        cert = _issued(csr)
        if cert is not None:
            return cert
    raise CertificateRequestError(f'watch of csr "{name}" ended')


async def request_certificate(
    client: AsyncClient,
    csr_pem: bytes,
    *,
    signer: str,
    usages: Sequence[str],
    on_created: Callable[[str, str], None] | None = None,
) -> bytes:
    """Create a CSR and wait until it is approved and signed.

    Args:
        client: A client with the requester's identity (bootstrap token or node certificate).
        csr_pem: The PEM PKCS#10 request.
        signer: ``spec.signerName``.
        usages: ``spec.usages``.
        on_created: Called with the CSR's name and UID once it exists.

    Returns:
        The issued certificate chain, PEM.

    Raises:
        CertificateRequestError: On denial, failure, UID change or deletion.
        lightkube.ApiError: When the API refuses a request (e.g. 401/403).
        httpx2.HTTPError: On transport errors.
    """
    name, uid = await create_csr(client, csr_pem, signer=signer, usages=usages)
    if on_created is not None:
        on_created(name, uid)
    return await wait_for_certificate(client, name, uid)
