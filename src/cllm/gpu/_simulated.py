"""The ``simulated`` GPU backend: a Hopper-shaped GPU with its own simulated device root CA,
leaf, RIMs and OCSP responder, kept in the state directory (``simulated-gpu.json``, 0600, made
once and shared by a server and a verifier on one machine).

Its reports are in the real byte format (``build_report``, ``build_rim``) and verify only under
its own roots, which ``GpuTrustRoots.custom`` marks ``nvidia_hardware = false``; under NVIDIA's
roots they fail with ``gpu_chain_untrusted``. Nothing here can make simulated evidence pass as
NVIDIA hardware.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509 import ocsp

from cllm.errors import GpuError
from cllm.gpu._backend import GpuCcState, GpuDevice, GpuEvidence, check_nonce
from cllm.gpu._report import MeasurementBlock, OpaqueField, build_report, encode_opaque
from cllm.gpu._rim import GoldenMeasurement, build_rim
from cllm.gpu._roots import GpuTrustRoots
from cllm.gpu._sources import RimFiles, RimSource

__all__ = [
    "SIMULATED_DRIVER",
    "SIMULATED_GPU_FILE",
    "SIMULATED_VBIOS",
    "SimulatedGpuBackend",
    "load_simulated_gpu",
    "simulated_roots_from_pem",
    "simulated_trust_roots",
]

_log = logging.getLogger(__name__)

SIMULATED_GPU_FILE: Final = "simulated-gpu.json"
SIMULATED_DRIVER: Final = "570.124.03"
SIMULATED_VBIOS: Final = "96.00.5E.00.04"
_VBIOS_RAW: Final = bytes([0x00, 0x5E, 0x00, 0x96, 0x04, 0, 0, 0])  # the opaque field's order
_FORMAT: Final = 1
_VALID: Final = timedelta(days=3650)
_SHA384_OID: Final = bytes.fromhex("0609608648016503040202")
_DRIVER_INDICES: Final = range(0, 32)
_VBIOS_INDICES: Final = range(32, 64)


def _raw_sign(key: ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA384())))
        return r.to_bytes(48, "big") + s.to_bytes(48, "big")

    return sign


def _name(cn: str, serial: str | None = None) -> x509.Name:
    attrs = [
        x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "cllm SIMULATED GPU"),
        x509.NameAttribute(x509.NameOID.COMMON_NAME, cn),
    ]
    if serial:
        attrs.append(x509.NameAttribute(x509.NameOID.SERIAL_NUMBER, serial))
    return x509.Name(attrs)


def _fwid_extension(fwid: bytes) -> bytes:
    """TCG DiceTcbInfo with one SHA-384 FWID: SEQUENCE { [6] { SEQUENCE { OID, OCTET } } }."""
    entry = _SHA384_OID + b"\x04\x30" + fwid
    fwids = b"\x30" + bytes([len(entry)]) + entry
    tagged = b"\xa6" + bytes([len(fwids)]) + fwids
    return b"\x30" + bytes([len(tagged)]) + tagged


@dataclass(frozen=True, slots=True)
class _Node:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def to_json(self) -> dict[str, str]:
        key = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "cert": self.cert.public_bytes(serialization.Encoding.PEM).decode(),
            "key": key.decode(),
        }

    @classmethod
    def from_json(cls, doc: object) -> _Node:
        if not isinstance(doc, dict):
            raise TypeError("node is not an object")
        key = serialization.load_pem_private_key(doc["key"].encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("not an EC key")
        return cls(x509.load_pem_x509_certificate(doc["cert"].encode()), key)


def _issue(
    subject: x509.Name,
    issuer: _Node | None,
    *,
    ca: bool,
    now: datetime,
    fwid: bytes | None = None,
) -> _Node:
    key = ec.generate_private_key(ec.SECP384R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + _VALID)
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
    if fwid is not None:
        oid = x509.ObjectIdentifier("2.23.133.5.4.1")
        builder = builder.add_extension(
            x509.UnrecognizedExtension(oid, _fwid_extension(fwid)), False
        )
    return _Node(builder.sign(issuer.key if issuer else key, hashes.SHA384()), key)


def _measurement(index: int) -> bytes:
    """Block ``index`` (1-based, as SPDM numbers them) of the simulated firmware."""
    return hashlib.sha384(b"cllm simulated GPU measurement %d" % index).digest()


@dataclass(frozen=True, slots=True)
class _World:
    device: tuple[_Node, ...]  # leaf, BROM CA, provisioner CA, identity CA, root
    rim_chain: tuple[_Node, ...]  # signer, L3, CA, root
    fwid: bytes
    rims: tuple[bytes, bytes]  # driver, VBIOS

    @classmethod
    def create(cls, now: datetime) -> _World:
        fwid = hashlib.sha384(now.isoformat().encode() + b"cllm simulated fwid").digest()
        root = _issue(_name("cllm SIMULATED GPU Device Identity CA"), None, ca=True, now=now)
        identity = _issue(_name("cllm SIMULATED GH100 Identity"), root, ca=True, now=now)
        provisioner = _issue(_name("cllm SIMULATED GH100 ICA"), identity, ca=True, now=now)
        serial = hashlib.sha256(fwid).hexdigest()[:18].upper()
        brom = _issue(_name("GH100 A01 GSP BROM", serial), provisioner, ca=True, now=now)
        leaf = _issue(_name("GH100 A01 GSP FMC LF"), brom, ca=False, now=now, fwid=fwid)
        rim_root = _issue(_name("cllm SIMULATED GPU RIM Root CA"), None, ca=True, now=now)
        rim_ca = _issue(_name("cllm SIMULATED RIM GH100 CA"), rim_root, ca=True, now=now)
        rim_l3 = _issue(_name("cllm SIMULATED RIM L3 GH100"), rim_ca, ca=True, now=now)
        rim_signer = _issue(_name("cllm SIMULATED RIM Signer"), rim_l3, ca=False, now=now)
        rim_chain = (rim_signer, rim_l3, rim_ca, rim_root)

        def rim(version: str, active: range) -> bytes:
            golden = tuple(
                GoldenMeasurement(i, i in active, 48, (_measurement(i + 1),)) for i in range(64)
            )
            return build_rim(
                version=version,
                product="GH100",
                measurements=golden,
                chain=tuple(n.cert for n in rim_chain),
                sign=_raw_sign(rim_signer.key),
            )

        return cls(
            device=(leaf, brom, provisioner, identity, root),
            rim_chain=rim_chain,
            fwid=fwid,
            rims=(rim(SIMULATED_DRIVER, _DRIVER_INDICES), rim(SIMULATED_VBIOS, _VBIOS_INDICES)),
        )

    def to_json(self) -> bytes:
        doc = {
            "format": _FORMAT,
            "simulated": True,
            "device": [n.to_json() for n in self.device],
            "rim_chain": [n.to_json() for n in self.rim_chain],
            "fwid": self.fwid.hex(),
            "rims": [r.decode() for r in self.rims],
        }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> _World:
        doc = json.loads(data)
        if doc.get("format") != _FORMAT:
            raise ValueError("unknown format")
        device = tuple(_Node.from_json(n) for n in doc["device"])
        rim_chain = tuple(_Node.from_json(n) for n in doc["rim_chain"])
        rims = tuple(r.encode() for r in doc["rims"])
        if len(device) != 5 or len(rim_chain) != 4 or len(rims) != 2:
            raise ValueError("wrong number of certificates or RIMs")
        return cls(device, rim_chain, bytes.fromhex(doc["fwid"]), (rims[0], rims[1]))


class SimulatedGpuBackend:
    """One simulated Hopper GPU in production CC mode (single-GPU passthrough)."""

    def __init__(
        self,
        world: _World,
        *,
        path: Path,
        devtools: bool = False,
        changed_blocks: frozenset[int] = frozenset(),
    ) -> None:
        self._world = world
        self.path = path
        self._devtools = devtools
        self._changed = changed_blocks

    def with_faults(
        self, *, devtools: bool = False, changed_blocks: frozenset[int] = frozenset()
    ) -> SimulatedGpuBackend:
        """The same GPU in DevTools mode (its collection refused with ``gpu_devtools_mode``,
        as NVML refuses) or running firmware whose SPDM blocks ``changed_blocks`` differ from
        its RIMs (``gpu_measurement_mismatch`` for a verifier): what tests and demos of the
        refusals use."""
        return SimulatedGpuBackend(
            self._world, path=self.path, devtools=devtools, changed_blocks=changed_blocks
        )

    @property
    def name(self) -> str:
        return "simulated"

    @property
    def simulated(self) -> bool:
        return True

    def devices(self) -> tuple[GpuDevice, ...]:
        serial = self._world.device[1].cert.subject.get_attributes_for_oid(
            x509.NameOID.SERIAL_NUMBER
        )
        return (
            GpuDevice(
                index=0,
                name="cllm SIMULATED H100",
                uuid=f"GPU-simulated-{serial[0].value!s}".lower() if serial else "GPU-simulated",
                arch="HOPPER",
                vbios_version=SIMULATED_VBIOS,
                driver_version=SIMULATED_DRIVER,
            ),
        )

    def cc_state(self) -> GpuCcState:
        return GpuCcState(
            cc_enabled=True,
            devtools=self._devtools,
            environment="prod",
            multi_gpu_mode="none",
            ready=None,
        )

    def collect(self, nonce: bytes) -> tuple[GpuEvidence, ...]:
        check_nonce(nonce)
        if self._devtools:
            raise GpuError(
                "the simulated GPU runs confidential computing in DevTools mode",
                code="gpu_devtools_mode",
            )

        def text(value: str) -> bytes:
            return value.encode() + b"\0"

        opaque = encode_opaque(
            [
                OpaqueField(6, _VBIOS_RAW),
                OpaqueField(15, text("862")),
                OpaqueField(17, text("1010")),
                OpaqueField(18, text("0205")),
                OpaqueField(3, text(SIMULATED_DRIVER)),
                OpaqueField(4, (0x180).to_bytes(8, "little")),  # GPU_INFO: Hopper
                OpaqueField(11, b"\x55"),  # NVDEC0 disabled
                OpaqueField(20, self._world.fwid),
                OpaqueField(36, (0).to_bytes(2, "little")),  # FEATURE_FLAG: SPT (one GPU)
            ]
        )
        report = build_report(
            request_nonce=nonce,
            blocks=[
                MeasurementBlock(
                    i,
                    1,
                    _measurement(i)
                    if i not in self._changed
                    else hashlib.sha384(b"changed firmware %d" % i).digest(),
                )
                for i in range(1, 65)
            ],
            responder_nonce=hashlib.sha256(nonce + b"responder").digest(),
            opaque=opaque,
            sign=_raw_sign(self._world.device[0].key),
        )
        chain = b"".join(
            n.cert.public_bytes(serialization.Encoding.PEM) for n in self._world.device
        )
        return (GpuEvidence(index=0, report=report, chain_pem=chain),)

    def root_pems(self) -> tuple[bytes, bytes]:
        """(device root, RIM root), PEM: what a verifier trusts to accept this GPU."""
        return (
            self._world.device[-1].cert.public_bytes(serialization.Encoding.PEM),
            self._world.rim_chain[-1].cert.public_bytes(serialization.Encoding.PEM),
        )

    def trust_roots(self) -> GpuTrustRoots:
        return simulated_trust_roots(*self.root_pems())

    def rims(self) -> RimSource | None:
        return RimFiles(self._world.rims)

    def ocsp_responses(self, at: int) -> tuple[bytes, ...]:
        """``good`` answers, signed by each issuer, for device certificates 1..3 and RIM chain
        certificates 0..2, fresh at ``at``."""
        produced = datetime.fromtimestamp(at, UTC) - timedelta(minutes=1)
        answers = []
        for chain, indices in ((self._world.device, (1, 2, 3)), (self._world.rim_chain, (0, 1, 2))):
            for i in indices:
                cert, issuer = chain[i], chain[i + 1]
                builder = (
                    ocsp.OCSPResponseBuilder()
                    .add_response(
                        cert=cert.cert,
                        issuer=issuer.cert,
                        algorithm=hashes.SHA384(),
                        cert_status=ocsp.OCSPCertStatus.GOOD,
                        this_update=produced,
                        next_update=produced + timedelta(days=1),
                        revocation_time=None,
                        revocation_reason=None,
                    )
                    .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.cert)
                )
                response = builder.sign(issuer.key, hashes.SHA384())
                answers.append(response.public_bytes(serialization.Encoding.DER))
        return tuple(answers)

    def set_ready(self) -> None:
        return None


def simulated_trust_roots(device_pem: bytes, rim_pem: bytes) -> GpuTrustRoots:
    """The roots a verifier passes to accept the simulated GPU (explicitly, never by default)."""
    try:
        device = x509.load_pem_x509_certificate(device_pem)
        rim = x509.load_pem_x509_certificate(rim_pem)
    except ValueError as exc:
        raise GpuError(f"not a simulated GPU root: {exc}", code="gpu_simulated_state") from exc
    return GpuTrustRoots.custom(device=device, rim=rim, name="cllm simulated GPU")


def simulated_roots_from_pem(pem: bytes) -> GpuTrustRoots:
    """Roots from the two-certificate PEM ``cllm gpu simulated-root`` prints (device root, then
    RIM root): what ``--trust-simulated-gpu-root PEM`` reads."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise GpuError(f"not a simulated GPU root: {exc}", code="gpu_simulated_state") from exc
    if len(certs) != 2:
        raise GpuError(
            f"a simulated GPU root file holds 2 certificates (device, RIM), not {len(certs)}",
            code="gpu_simulated_state",
        )
    return GpuTrustRoots.custom(device=certs[0], rim=certs[1], name="cllm simulated GPU")


def load_simulated_gpu(state_dir: Path, *, clock: Callable[[], float]) -> SimulatedGpuBackend:
    """The simulated GPU of ``state_dir``, created on first use (first writer wins)."""
    from cllm._internal.files import publish_file  # the TD simulation's atomic 0600 writer

    path = state_dir / SIMULATED_GPU_FILE
    if not path.exists():
        world = _World.create(datetime.fromtimestamp(clock(), UTC))
        if publish_file(path, world.to_json(), replace=False):
            _log.warning("created a SIMULATED GPU in %s (its evidence is not NVIDIA's)", path)
    try:
        world = _World.from_json(path.read_bytes())
    except OSError as exc:
        raise GpuError(f"cannot read {path}: {exc.strerror}", code="gpu_simulated_state") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise GpuError(
            f"{path} is not a simulated GPU state file: {exc}", code="gpu_simulated_state"
        ) from exc
    return SimulatedGpuBackend(world, path=path)
