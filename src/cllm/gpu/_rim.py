"""NVIDIA RIMs: TCG/ISO SWID documents with an enveloped XML signature, verified narrowly.

Only NVIDIA's exact signature profile is accepted: one ``ds:Signature``, the last child of the
root, with one ``Reference URI=""`` (enveloped-signature + C14N 1.1 transforms, SHA-384 digest),
ECDSA-SHA384 over the C14N 1.1 ``SignedInfo``, and the signing chain in ``KeyInfo/X509Data``.
Documents using ``xml:`` attributes are refused, so lxml's inclusive C14N 1.0 equals C14N 1.1.
Golden values are read only after the signature, digest and chain have verified.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from cllm.errors import X509_DECODE_ERRORS as _X509_ERRORS
from cllm.errors import GpuEvidenceFormatError, VerificationError
from cllm.gpu._chain import check_links, check_validity, ecdsa_p384_verify, validity_windows

# Malformed DER (and unknown curves or algorithms in it) surface lazily as these.
X509_DECODE_ERRORS: tuple[type[Exception], ...] = (*_X509_ERRORS, UnsupportedAlgorithm)

__all__ = [
    "MAX_RIM_SIZE",
    "GoldenMeasurement",
    "Rim",
    "RimKind",
    "build_rim",
    "parse_rim",
    "rim_kind_and_version",
]

MAX_RIM_SIZE: Final = 1 << 20
RIM_CHAIN_LENGTH: Final = 4
_SWID: Final = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
_DS: Final = "http://www.w3.org/2000/09/xmldsig#"
_SHA384_NS: Final = "http://www.w3.org/2001/04/xmlenc#sha384"
_XML_NS: Final = "http://www.w3.org/XML/1998/namespace"
_C14N11: Final = "http://www.w3.org/2006/12/xml-c14n11"
_ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_ECDSA_SHA384: Final = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
_DIGEST_SHA384: Final = "http://www.w3.org/2001/04/xmldsig-more#sha384"
_DRIVER_VERSION: Final = re.compile(r"[0-9]{1,4}(\.[0-9]{1,4}){1,3}")
_VBIOS_VERSION: Final = re.compile(r"[0-9A-Fa-f]{2}(\.[0-9A-Fa-f]{2}){4}")
_MAX_INDEX: Final = 255
_MAX_ALTERNATIVES: Final = 64


class RimKind(enum.StrEnum):
    DRIVER = "driver"
    VBIOS = "vbios"


@dataclass(frozen=True, slots=True)
class GoldenMeasurement:
    index: int  # RIM index i: SPDM measurement block i + 1
    active: bool
    size: int
    alternatives: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Rim:
    """A RIM whose signature, digest and chain structure verified (validity is checked apart,
    at the evaluation time: ``check_validity``)."""

    kind: RimKind
    version: str  # colloquialVersion as written
    product: str
    tag_id: str
    measurements: tuple[GoldenMeasurement, ...]
    chain: tuple[x509.Certificate, ...]  # signer first, root last
    sha384: bytes  # of the document bytes
    windows: tuple[tuple[int, int], ...]  # validity of each chain certificate

    @property
    def active_indices(self) -> tuple[int, ...]:
        return tuple(m.index for m in self.measurements if m.active)

    def check_validity(self, at: int) -> int:
        """Signing chain valid at ``at``; returns its earliest expiry."""
        return check_validity(
            self.chain, at, what=f"{self.kind} RIM chain", prefix="gpu_rim", windows=self.windows
        )


def _malformed(reason: str) -> GpuEvidenceFormatError:
    return GpuEvidenceFormatError(f"RIM: {reason}", code="gpu_rim_malformed")


def _invalid(reason: str, code: str) -> VerificationError:
    return VerificationError(f"RIM: {reason}", code=code)


_PARSER: Final = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, dtd_validation=False
)


def _load(data: bytes) -> etree._Element:
    if len(data) > MAX_RIM_SIZE:
        raise _malformed(f"{len(data)} bytes, at most {MAX_RIM_SIZE}")
    try:
        root = etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise _malformed(f"not well-formed XML ({exc})") from exc
    tree = root.getroottree()
    docinfo: Any = tree.docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise _malformed("document type declarations are not allowed")
    if root.tag != f"{{{_SWID}}}SoftwareIdentity":
        raise _malformed(f"root element is {root.tag!s}, not SoftwareIdentity")
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue  # comments and processing instructions
        if any(str(name).startswith(f"{{{_XML_NS}}}") for name in element.attrib):
            raise _malformed("xml: attributes are not supported (C14N 1.1 would differ)")
    return root


def _children(element: etree._Element) -> list[etree._Element]:
    return [child for child in element if isinstance(child.tag, str)]


def _expect(element: etree._Element, name: str, algorithm: str | None = None) -> None:
    if element.tag != f"{{{_DS}}}{name}":
        raise _malformed(f"signature profile: expected ds:{name}, found {element.tag!s}")
    if algorithm is not None and element.get("Algorithm") != algorithm:
        raise _malformed(f"signature profile: ds:{name} algorithm {element.get('Algorithm')}")


def _shape(element: etree._Element, *names: str) -> list[etree._Element]:
    kids = _children(element)
    if len(kids) != len(names):
        raise _malformed(f"signature profile: {element.tag!s} has {len(kids)} children")
    for kid, name in zip(kids, names, strict=True):
        _expect(kid, name)
    if (element.text or "").strip() or any((kid.tail or "").strip() for kid in kids):
        raise _malformed("signature profile: text between signature elements")
    return kids


def _b64(element: etree._Element, what: str) -> bytes:
    text = re.sub(r"\s+", "", element.text or "")
    try:
        value = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _malformed(f"{what} is not base64") from exc
    if base64.b64encode(value).decode() != text:  # e.g. stray bits in the last character
        raise _malformed(f"{what} is not canonical base64")
    return value


@dataclass(frozen=True, slots=True)
class _Signature:
    element: etree._Element
    signed_info: etree._Element
    digest: bytes
    value: bytes
    certificates: tuple[x509.Certificate, ...]


def _signature(root: etree._Element) -> _Signature:
    found = list(root.iter(f"{{{_DS}}}Signature"))
    kids = _children(root)
    if len(found) != 1 or not kids or kids[-1] is not found[0]:
        raise _malformed("exactly one ds:Signature, the root's last child, is required")
    signature = found[0]
    signed_info, value, key_info = _shape(signature, "SignedInfo", "SignatureValue", "KeyInfo")
    c14n, method, reference = _shape(
        signed_info, "CanonicalizationMethod", "SignatureMethod", "Reference"
    )
    _expect(c14n, "CanonicalizationMethod", _C14N11)
    _expect(method, "SignatureMethod", _ECDSA_SHA384)
    if {str(k): str(v) for k, v in reference.attrib.items()} != {"URI": ""}:
        raise _malformed('signature profile: the one Reference must be URI=""')
    transforms, digest_method, digest_value = _shape(
        reference, "Transforms", "DigestMethod", "DigestValue"
    )
    first, second = _shape(transforms, "Transform", "Transform")
    _expect(first, "Transform", _ENVELOPED)
    _expect(second, "Transform", _C14N11)
    _expect(digest_method, "DigestMethod", _DIGEST_SHA384)
    for element in (c14n, method, first, second, digest_method, digest_value, value):
        if _children(element):
            raise _malformed("signature profile: unexpected child elements")
    (x509_data,) = _shape(key_info, "X509Data")
    cert_elements = _children(x509_data)
    if not cert_elements or len(cert_elements) > 8:
        raise _malformed("signature profile: X509Data must hold 1 to 8 certificates")
    _shape(x509_data, *("X509Certificate" for _ in cert_elements))
    certs = []
    for element in cert_elements:
        try:
            cert = x509.load_der_x509_certificate(_b64(element, "X509Certificate"))
            _ = (cert.subject, cert.issuer, cert.not_valid_after_utc, cert.extensions)
        except X509_DECODE_ERRORS as exc:
            raise _malformed(f"KeyInfo certificate does not decode ({exc})") from exc
        certs.append(cert)
    digest = _b64(digest_value, "DigestValue")
    raw_value = _b64(value, "SignatureValue")
    if len(digest) != 48 or len(raw_value) != 96:
        raise _malformed("DigestValue must be 48 bytes and SignatureValue 96 (P-384 r || s)")
    return _Signature(signature, signed_info, digest, raw_value, tuple(certs))


def _document_digest(root: etree._Element, signature: etree._Element) -> bytes:
    """SHA-384 of C14N(document without the signature): the enveloped-signature transform."""
    tail = signature.tail
    previous = signature.getprevious()
    root.remove(signature)  # lxml drops the tail with the element: keep it where it was
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            root.text = (root.text or "") + tail
    return hashlib.sha384(_c14n(root.getroottree())).digest()


def _c14n(node: etree._Element | etree._ElementTree) -> bytes:
    try:
        return etree.tostring(node, method="c14n")
    except (etree.C14NError, etree.SerialisationError, ValueError) as exc:
        # e.g. a relative namespace URI, which C14N refuses
        raise _malformed(f"cannot be canonicalized ({exc})") from exc


def rim_kind_and_version(version: str) -> RimKind:
    if _VBIOS_VERSION.fullmatch(version):
        return RimKind.VBIOS
    if _DRIVER_VERSION.fullmatch(version):
        return RimKind.DRIVER
    raise _malformed(f"colloquialVersion {version!r} is neither a driver nor a VBIOS version")


def _int(text: str | None, what: str, low: int, high: int) -> int:
    if text is None or not re.fullmatch(r"[0-9]{1,3}", text) or not low <= int(text) <= high:
        raise _malformed(f"{what} {text!r} is not an integer in {low}..{high}")
    return int(text)


def _golden(root: etree._Element) -> tuple[str, str, str, tuple[GoldenMeasurement, ...]]:
    metas = root.findall(f"{{{_SWID}}}Meta")
    payloads = root.findall(f"{{{_SWID}}}Payload")
    if len(metas) != 1 or len(payloads) != 1:
        raise _malformed("exactly one Meta and one Payload are required")
    version = metas[0].get("colloquialVersion")
    product = metas[0].get("product")
    tag_id = root.get("tagId") or ""
    if not version or not product:
        raise _malformed("Meta lacks colloquialVersion or product")
    entries: dict[int, GoldenMeasurement] = {}
    for resource in _children(payloads[0]):
        if resource.tag != f"{{{_SWID}}}Resource" or resource.get("type") != "Measurement":
            raise _malformed(f"unexpected Payload element {resource.tag!s}")
        index = _int(resource.get("index"), "index", 0, _MAX_INDEX)
        if index in entries:
            raise _malformed(f"measurement index {index} repeated")
        active_text = resource.get("active")
        if active_text not in ("True", "False"):
            raise _malformed(f"index {index}: active={active_text!r}")
        count = _int(resource.get("alternatives"), "alternatives", 1, _MAX_ALTERNATIVES)
        size = _int(resource.get("size"), "size", 1, 64)
        alternatives = []
        for n in range(count):
            text = resource.get(f"{{{_SHA384_NS}}}Hash{n}")
            if text is None or not re.fullmatch(r"[0-9a-fA-F]+", text) or len(text) != 2 * size:
                raise _malformed(f"index {index}: Hash{n} missing or not {size} bytes of hex")
            alternatives.append(bytes.fromhex(text))
        entries[index] = GoldenMeasurement(index, active_text == "True", size, tuple(alternatives))
    return version, product, tag_id, tuple(entries[i] for i in sorted(entries))


def parse_rim(data: bytes, *, root_der: bytes) -> Rim:
    """Verify a RIM's structure, chain links to ``root_der``, signature and digest, then read
    its golden values. Time-independent (cache it by ``data``); validity: ``Rim.check_validity``.
    """
    root = _load(data)
    sig = _signature(root)
    check_links(
        sig.certificates,
        root_der=root_der,
        what="RIM signing chain",
        code="gpu_rim_chain_invalid",
        untrusted="gpu_rim_chain_untrusted",
    )
    if len(sig.certificates) != RIM_CHAIN_LENGTH:
        raise _invalid(
            f"signing chain has {len(sig.certificates)} certificates, {RIM_CHAIN_LENGTH} required",
            "gpu_rim_chain_invalid",
        )
    signed_info = _c14n(sig.signed_info)
    key = sig.certificates[0].public_key()
    if not ecdsa_p384_verify(key, sig.value, signed_info):  # type: ignore[arg-type]
        raise _invalid(
            "signature does not verify under the KeyInfo signer", "gpu_rim_signature_invalid"
        )
    if _document_digest(root, sig.element) != sig.digest:
        raise _invalid(
            "document digest does not match the signed digest (edited after signing)",
            "gpu_rim_digest_mismatch",
        )
    version, product, tag_id, measurements = _golden(root)
    return Rim(
        kind=rim_kind_and_version(version),
        version=version,
        product=product,
        tag_id=tag_id,
        measurements=measurements,
        chain=sig.certificates,
        sha384=hashlib.sha384(data).digest(),
        windows=validity_windows(sig.certificates),
    )


# -- encoder: a RIM in NVIDIA's exact profile (simulated GPUs, tests) ------------------------


def build_rim(
    *,
    version: str,
    product: str,
    measurements: tuple[GoldenMeasurement, ...],
    chain: tuple[x509.Certificate, ...],
    sign: Callable[[bytes], bytes],
    tag_id: str = "0" * 96,
) -> bytes:
    """A signed SWID RIM that ``parse_rim`` accepts under the root ending ``chain``.

    ``sign`` maps the canonical SignedInfo to a raw 96-byte ECDSA P-384 r || s signature made
    with the key of ``chain[0]``.
    """
    swid = f"{{{_SWID}}}"
    root = etree.Element(
        f"{swid}SoftwareIdentity",
        nsmap={None: _SWID, "ns0": _SWID, "ns2": _SHA384_NS},  # type: ignore[dict-item]
        attrib={"name": product, "tagId": tag_id, "version": "1.0", "tagVersion": "0"},
    )
    etree.SubElement(root, f"{swid}Entity", name="NVIDIA Corporation", role="tagCreator")
    etree.SubElement(root, f"{swid}Meta", colloquialVersion=version, product=product)
    payload = etree.SubElement(root, f"{swid}Payload")
    for m in measurements:
        attrib = {
            "type": "Measurement",
            "index": str(m.index),
            "active": "True" if m.active else "False",
            "alternatives": str(len(m.alternatives)),
            "size": str(m.size),
        }
        for n, value in enumerate(m.alternatives):
            attrib[f"{{{_SHA384_NS}}}Hash{n}"] = value.hex()
        etree.SubElement(payload, f"{swid}Resource", attrib=attrib)
    digest = hashlib.sha384(_c14n(root.getroottree())).digest()
    ds = f"{{{_DS}}}"
    signature = etree.SubElement(root, f"{ds}Signature", nsmap={"ds": _DS})
    signed_info = etree.SubElement(signature, f"{ds}SignedInfo")
    etree.SubElement(signed_info, f"{ds}CanonicalizationMethod", Algorithm=_C14N11)
    etree.SubElement(signed_info, f"{ds}SignatureMethod", Algorithm=_ECDSA_SHA384)
    reference = etree.SubElement(signed_info, f"{ds}Reference", URI="")
    transforms = etree.SubElement(reference, f"{ds}Transforms")
    etree.SubElement(transforms, f"{ds}Transform", Algorithm=_ENVELOPED)
    etree.SubElement(transforms, f"{ds}Transform", Algorithm=_C14N11)
    etree.SubElement(reference, f"{ds}DigestMethod", Algorithm=_DIGEST_SHA384)
    etree.SubElement(reference, f"{ds}DigestValue").text = base64.b64encode(digest).decode()
    value_element = etree.SubElement(signature, f"{ds}SignatureValue")
    x509_data = etree.SubElement(etree.SubElement(signature, f"{ds}KeyInfo"), f"{ds}X509Data")
    for cert in chain:
        element = etree.SubElement(x509_data, f"{ds}X509Certificate")
        element.text = base64.b64encode(cert.public_bytes(Encoding.DER)).decode()
    raw = sign(_c14n(signed_info))
    if len(raw) != 96:
        raise ValueError("RIM signature must be 96 bytes (P-384 r || s)")
    value_element.text = base64.b64encode(raw).decode()
    return bytes(etree.tostring(root, xml_declaration=False))
