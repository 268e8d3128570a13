"""Collateral from Intel PCS or a PCCS (v4 API), cached per (TEE, FMSPC, PCK CA) until the
earliest nextUpdate of its pieces.

The TCB info and QE identity signatures cover the exact bytes of the inner JSON objects, so
they are cut out of the response text, never re-serialised. Time comes from an injected clock.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from cllm.errors import CollateralFetchError, CollateralFormatError, QuoteFormatError
from cllm.quote import CertificationData, Quote, parse_pck_chain, parse_pck_extensions
from cllm.quote import layout as quote_layout
from cllm.verify._collateral import (
    Collateral,
    parse_qe_identity,
    parse_tcb_info,
    pem_crl_to_der,
)
from cllm.verify._pki import check_pem_chain_size, parse_crl

if TYPE_CHECKING:
    import httpx  # the caller's client; imported when used (httpx is most of a one-shot's start)

__all__ = [
    "INTEL_PCS_URL",
    "QCNL_CONF",
    "CollateralFetcher",
    "CollateralKey",
    "collateral_key",
    "collateral_key_of",
    "default_collateral_url",
    "read_qcnl_pccs_url",
]

_log = logging.getLogger(__name__)

INTEL_PCS_URL: Final = "https://api.trustedservices.intel.com"
INTEL_ROOT_CA_CRL_URL: Final = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
QCNL_CONF: Final = Path("/etc/sgx_default_qcnl.conf")

Tee = Literal["tdx", "sgx"]
PckCa = Literal["platform", "processor"]

_API_SUFFIX = re.compile(r"/(sgx|tdx)/certification/v\d+/?$")


def _service_root(url: str) -> str:
    """``https://host:8081/sgx/certification/v4/`` → ``https://host:8081``."""
    return _API_SUFFIX.sub("", url.rstrip("/") + "/").rstrip("/")


def read_qcnl_pccs_url(path: Path = QCNL_CONF) -> str | None:
    """The PCCS URL of a QCNL configuration file (JSON ``pccs_url`` or legacy ``PCCS_URL=``)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    # QCNL's JSON allows // and /* */ comments; drop whole-line ones before decoding.
    stripped = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    stripped = "\n".join(
        line for line in stripped.splitlines() if not line.lstrip().startswith("//")
    )
    try:
        doc = json.loads(stripped)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        url = doc.get("pccs_url")
        return url if isinstance(url, str) and url else None
    for line in text.splitlines():
        key, sep, value = line.split("#", 1)[0].strip().partition("=")
        if sep and key.strip() == "PCCS_URL" and value.strip():
            return value.strip()
    return None


def default_collateral_url(qcnl_conf: Path = QCNL_CONF) -> str:
    """The PCCS configured for this machine (as the TDX guide sets it up), else Intel PCS."""
    return read_qcnl_pccs_url(qcnl_conf) or INTEL_PCS_URL


def _signed_member(body: bytes, member: str, what: str) -> tuple[bytes, bytes]:
    """Cut ``member`` (the signed object, as raw text) and ``signature`` out of a PCS body."""
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise CollateralFormatError(f"{what} response is not UTF-8") from exc
    decoder = json.JSONDecoder()
    spans: dict[str, tuple[int, int]] = {}
    pos = _skip_ws(text, 0)
    if not text.startswith("{", pos):
        raise CollateralFormatError(f"{what} response is not a JSON object")
    pos = _skip_ws(text, pos + 1)
    try:
        while not text.startswith("}", pos):
            key, pos = decoder.raw_decode(text, pos)
            pos = _skip_ws(text, pos)
            if not text.startswith(":", pos):
                raise CollateralFormatError(f"{what} response: expected ':'")
            start = _skip_ws(text, pos + 1)
            _, end = decoder.raw_decode(text, start)
            spans[str(key)] = (start, end)
            pos = _skip_ws(text, end)
            if text.startswith(",", pos):
                pos = _skip_ws(text, pos + 1)
    except (ValueError, RecursionError) as exc:
        raise CollateralFormatError(f"{what} response is not JSON: {exc}") from exc
    if member not in spans or "signature" not in spans:
        raise CollateralFormatError(f"{what} response lacks {member!r} or 'signature'")
    signed = text[slice(*spans[member])].encode()
    signature = json.loads(text[slice(*spans["signature"])])
    try:
        raw_signature = bytes.fromhex(signature)
    except (TypeError, ValueError) as exc:
        raise CollateralFormatError(f"{what} signature is not hex") from exc
    if len(raw_signature) != 64:
        raise CollateralFormatError(f"{what} signature must be 64 bytes")
    return signed, raw_signature


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _crl_der(body: bytes, what: str) -> bytes:
    """CRL bodies come as DER (PCS with encoding=der), hex of DER (PCCS) or PEM."""
    stripped = body.strip()
    if stripped.startswith(b"-----BEGIN"):
        return pem_crl_to_der(stripped, what)
    if stripped[:1] == b"\x30":
        return bytes(stripped)
    try:
        return bytes.fromhex(stripped.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CollateralFormatError(f"{what} is neither DER, hex nor PEM") from exc


@dataclass(frozen=True, slots=True)
class CollateralKey:
    """What selects a quote's collateral set."""

    tee: Tee
    fmspc: bytes
    ca: PckCa


def collateral_key(quote: Quote) -> CollateralKey:
    """TEE, FMSPC and issuing PCK CA, read from the quote's PCK certificate."""
    return collateral_key_of(quote.signature_data.certification, is_tdx=quote.is_tdx)


def collateral_key_of(certification: CertificationData, *, is_tdx: bool) -> CollateralKey:
    """``collateral_key`` from a quote's certification data and TEE."""
    if certification.type == quote_layout.CERT_PCK_CHAIN:
        check_pem_chain_size(certification.data, what="PCK chain")
    chain = parse_pck_chain(certification)
    fmspc = parse_pck_extensions(chain[0]).fmspc
    issuer = chain[0].issuer.rfc4514_string()
    if "Processor" in issuer:
        ca: PckCa = "processor"
    elif "Platform" in issuer:
        ca = "platform"
    else:
        raise QuoteFormatError(
            f"PCK certificate issuer {issuer!r} names no PCK CA",
            offset=0,
            code="pck_chain_malformed",
        )
    return CollateralKey(tee="tdx" if is_tdx else "sgx", fmspc=fmspc, ca=ca)


@dataclass(frozen=True, slots=True)
class _Cached:
    collateral: Collateral
    expires: int  # last second at which every piece is still valid


class CollateralFetcher:
    """Fetches QuoteCollateralV3 sets from Intel PCS or a PCCS and caches them in memory."""

    def __init__(
        self,
        *,
        base_url: str,
        client: httpx.Client,
        clock: Callable[[], float],
    ) -> None:
        self._root = _service_root(base_url)
        self._is_intel_pcs = self._root == INTEL_PCS_URL
        self._client = client
        self._clock = clock
        self._cache: dict[tuple[Tee, str, PckCa], _Cached] = {}

    @property
    def base_url(self) -> str:
        return self._root

    def for_quote(self, quote: Quote) -> Collateral:
        """Collateral for a quote, chosen by its PCK certificate's FMSPC and issuing CA."""
        key = collateral_key(quote)
        return self.fetch(tee=key.tee, fmspc=key.fmspc, ca=key.ca)

    def fetch(self, *, tee: Tee, fmspc: bytes, ca: PckCa) -> Collateral:
        key = (tee, fmspc.hex().upper(), ca)
        now = int(self._clock())
        cached = self._cache.get(key)
        if cached is not None and now <= cached.expires:
            return cached.collateral
        collateral = self._download(tee, key[1], ca)
        expires = _expiry(collateral)
        if expires < now:
            _log.warning("collateral for %s %s %s is already stale (served expired)", *key)
        self._cache[key] = _Cached(collateral=collateral, expires=expires)
        return collateral

    def _get(self, url: str, what: str, params: dict[str, str] | None = None) -> httpx.Response:
        import httpx

        try:
            response = self._client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise CollateralFetchError(f"cannot fetch {what} from {url}: {exc}") from exc
        if response.status_code != 200:
            raise CollateralFetchError(
                f"{what}: {url} answered HTTP {response.status_code}",
                code="collateral_not_found" if response.status_code == 404 else None,
            )
        return response

    def _chain_header(self, response: httpx.Response, names: tuple[str, ...], what: str) -> str:
        for name in names:
            value = response.headers.get(name)
            if value:
                return urllib.parse.unquote(value)
        raise CollateralFetchError(f"{what} response lacks the {names[0]} header")

    def _download(self, tee: Tee, fmspc: str, ca: PckCa) -> Collateral:
        sgx_api = f"{self._root}/sgx/certification/v4"
        tee_api = f"{self._root}/{tee}/certification/v4"
        _log.info("fetching %s collateral for FMSPC %s (%s CA) from %s", tee, fmspc, ca, self._root)

        tcb = self._get(f"{tee_api}/tcb", "TCB info", {"fmspc": fmspc})
        tcb_info, tcb_signature = _signed_member(tcb.content, "tcbInfo", "TCB info")
        tcb_chain = self._chain_header(
            tcb, ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"), "TCB info"
        )
        qe = self._get(f"{tee_api}/qe/identity", "QE identity")
        qe_identity, qe_signature = _signed_member(qe.content, "enclaveIdentity", "QE identity")
        qe_chain = self._chain_header(qe, ("SGX-Enclave-Identity-Issuer-Chain",), "QE identity")
        pck_crl = self._get(f"{sgx_api}/pckcrl", "PCK CRL", {"ca": ca, "encoding": "der"})
        pck_crl_chain = self._chain_header(pck_crl, ("SGX-PCK-CRL-Issuer-Chain",), "PCK CRL")
        root_crl_url = INTEL_ROOT_CA_CRL_URL if self._is_intel_pcs else f"{sgx_api}/rootcacrl"
        root_crl = self._get(root_crl_url, "root CA CRL")
        return Collateral(
            pck_crl_issuer_chain=pck_crl_chain,
            root_ca_crl=_crl_der(root_crl.content, "root CA CRL"),
            pck_crl=_crl_der(pck_crl.content, "PCK CRL"),
            tcb_info_issuer_chain=tcb_chain,
            tcb_info=tcb_info,
            tcb_info_signature=tcb_signature,
            qe_identity_issuer_chain=qe_chain,
            qe_identity=qe_identity,
            qe_identity_signature=qe_signature,
        )


def _expiry(collateral: Collateral) -> int:
    """The last second at which every dated document of the set is still current."""
    tcb_info = parse_tcb_info(collateral.tcb_info)
    qe_identity = parse_qe_identity(collateral.qe_identity)
    crls = (
        parse_crl(collateral.root_ca_crl, "root CA CRL"),
        parse_crl(collateral.pck_crl, "PCK CRL"),
    )
    return min(
        int(tcb_info.next_update.timestamp()),
        int(qe_identity.next_update.timestamp()),
        *(crl.validity.not_after for crl in crls),
    )
