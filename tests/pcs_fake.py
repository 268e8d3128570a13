"""A stand-in for Intel PCS or a PCCS (for httpx.MockTransport): serves one collateral set the
way the real services lay it out (signed objects in JSON bodies, issuer chains in headers)."""

from __future__ import annotations

import urllib.parse

import httpx

from cllm.verify import Collateral


class FakePcs:
    """Serves one collateral set the way Intel PCS (or a PCCS) lays it out."""

    def __init__(self, collateral: Collateral, *, pccs: bool) -> None:
        self.collateral = collateral
        self.pccs = pccs
        self.requests: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        c = self.collateral
        path = request.url.path
        quoted = urllib.parse.quote
        if path.endswith("/tcb"):
            return _signed(
                "tcbInfo",
                c.tcb_info,
                c.tcb_info_signature,
                {"TCB-Info-Issuer-Chain": quoted(c.tcb_info_issuer_chain)},
            )
        if path.endswith("/qe/identity"):
            return _signed(
                "enclaveIdentity",
                c.qe_identity,
                c.qe_identity_signature,
                {"SGX-Enclave-Identity-Issuer-Chain": quoted(c.qe_identity_issuer_chain)},
            )
        if path.endswith("/pckcrl"):
            assert request.url.params["encoding"] == "der"
            return httpx.Response(
                200,
                content=c.pck_crl,
                headers={"SGX-PCK-CRL-Issuer-Chain": quoted(c.pck_crl_issuer_chain)},
            )
        if path.endswith("/rootcacrl") and self.pccs:
            return httpx.Response(200, content=c.root_ca_crl.hex().encode())  # PCCS: hex of DER
        if path.endswith("IntelSGXRootCA.der") and not self.pccs:
            return httpx.Response(200, content=c.root_ca_crl)
        return httpx.Response(404)


def _signed(
    member: str, document: bytes, signature: bytes, headers: dict[str, str]
) -> httpx.Response:
    """A PCS v4 body: the signed object's exact bytes and its hex signature."""
    body = (
        b'{"'
        + member.encode()
        + b'":'
        + document
        + b',"signature":"'
        + signature.hex().encode()
        + b'"}'
    )
    return httpx.Response(200, content=body, headers=headers)
