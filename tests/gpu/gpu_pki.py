"""A test PKI shaped like NVIDIA's: a 5-certificate device chain and a 4-certificate RIM chain
under test roots, a simulated GPU report signed by the test leaf, RIMs, and OCSP answers.

Under these roots a verdict is never ``nvidia_hardware``; under NVIDIA's, this evidence fails.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from cllm.gpu import GoldenMeasurement, GpuTrustRoots, MeasurementBlock, build_report, build_rim
from cllm.gpu._report import OpaqueField, encode_opaque

START = datetime(2024, 1, 1, tzinfo=UTC)
NOW = int(datetime(2025, 6, 1, tzinfo=UTC).timestamp())
FWID = bytes(range(48))
NONCE = bytes(range(100, 132))
DRIVER = "570.124.03"
VBIOS_RAW = bytes([0x00, 0x5E, 0x00, 0x96, 0x04, 0, 0, 0])  # 96.00.5E.00.04


def raw_sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA384())))
    return r.to_bytes(48, "big") + s.to_bytes(48, "big")


def _name(cn: str, serial: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)]
    if serial:
        attrs.append(x509.NameAttribute(x509.NameOID.SERIAL_NUMBER, serial))
    return x509.Name(attrs)


@dataclass
class Node:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def issue(
    subject: x509.Name,
    issuer: Node | None,
    *,
    ca: bool,
    eku: bool = False,
    fwid_ext: bytes | None = None,
    days: int = 3650,
) -> Node:
    key = ec.generate_private_key(ec.SECP384R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(START + timedelta(days=days))
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False
        )
    if fwid_ext is not None:
        ext = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.23.133.5.4.1"), fwid_ext)
        builder = builder.add_extension(ext, False)
    signer = issuer.key if issuer else key
    return Node(builder.sign(signer, hashes.SHA384()), key)


@dataclass
class Pki:
    device: list[Node]  # leaf first, root last
    rim_chain: list[Node]  # signer first, root last
    roots: GpuTrustRoots

    @property
    def chain_pem(self) -> bytes:
        return b"".join(n.cert.public_bytes(serialization.Encoding.PEM) for n in self.device)

    def report(self, *, nonce: bytes = NONCE, fwid: bytes = FWID) -> bytes:
        blocks = [MeasurementBlock(i, 1, bytes([i]) * 48) for i in range(1, 65)]
        text = lambda s: s.encode() + b"\0"  # noqa: E731
        opaque = encode_opaque(
            [
                OpaqueField(6, VBIOS_RAW),
                OpaqueField(15, text("862")),
                OpaqueField(17, text("1010")),
                OpaqueField(18, text("0205")),
                OpaqueField(3, text(DRIVER)),
                OpaqueField(4, (0x180).to_bytes(8, "little")),
                OpaqueField(11, b"\x55"),
                OpaqueField(20, fwid),
            ]
        )
        leaf = self.device[0].key
        return build_report(
            request_nonce=nonce,
            blocks=blocks,
            responder_nonce=bytes(32),
            opaque=opaque,
            sign=lambda data: raw_sign(leaf, data),
        )

    def rim(self, version: str, active: range, *, product: str = "GH100") -> bytes:
        golden = tuple(
            GoldenMeasurement(i, i in active, 48, (bytes([i + 1]) * 48,)) for i in range(64)
        )
        signer = self.rim_chain[0].key
        return build_rim(
            version=version,
            product=product,
            measurements=golden,
            chain=tuple(n.cert for n in self.rim_chain),
            sign=lambda data: raw_sign(signer, data),
        )

    def ocsp(
        self,
        chain: list[Node],
        index: int,
        *,
        status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
        nonce: bytes | None = None,
        this_update: datetime | None = None,
        next_update: datetime | None = None,
        responder: Node | None = None,
    ) -> bytes:
        cert, issuer = chain[index], chain[index + 1]
        signer = responder or issuer
        produced = this_update or datetime.fromtimestamp(NOW - 60, UTC)
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert.cert,
            issuer=issuer.cert,
            algorithm=hashes.SHA384(),
            cert_status=status,
            this_update=produced,
            next_update=next_update or produced + timedelta(days=1),
            revocation_time=START if status == ocsp.OCSPCertStatus.REVOKED else None,
            revocation_reason=None,
        )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
        if responder is not None:
            builder = builder.certificates([responder.cert])
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(signer.key, hashes.SHA384())
        return response.public_bytes(serialization.Encoding.DER)


@functools.cache
def pki() -> Pki:
    root = issue(_name("Test Device Identity CA"), None, ca=True)
    identity = issue(_name("Test GH100 Identity"), root, ca=True)
    provisioner = issue(_name("Test GH100 Provisioner ICA 1"), identity, ca=True)
    brom = issue(_name("GH100 A01 GSP BROM", "41AABBCCDDEEFF0011"), provisioner, ca=True)
    fwid_ext = bytes.fromhex("30400201013039") + bytes.fromhex("06096086480165030402020430") + FWID
    leaf = issue(_name("GH100 A01 GSP FMC LF"), brom, ca=False, fwid_ext=fwid_ext)
    rim_root = issue(_name("Test CoRIM signing Root CA"), None, ca=True)
    rim_ca = issue(_name("Test Reference Value GH100 CA"), rim_root, ca=True)
    rim_l3 = issue(_name("Test Reference Value L3 GH100"), rim_ca, ca=True)
    rim_signer = issue(_name("Test RIM L4 Signer"), rim_l3, ca=False, days=730)
    roots = GpuTrustRoots.custom(device=root.cert, rim=rim_root.cert, name="test GPU roots")
    return Pki(
        device=[leaf, brom, provisioner, identity, root],
        rim_chain=[rim_signer, rim_l3, rim_ca, rim_root],
        roots=roots,
    )
