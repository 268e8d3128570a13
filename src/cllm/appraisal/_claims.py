"""The token's claims as types (docs/verifier.md, "Token claims"): what the appraisal issues,
the SDK parses, the CLI prints and the UI reads. ``ui/src/claims.schema.json`` is generated from
``TokenClaims`` (see ``cllm.appraisal._schema`` for the command that regenerates it).

Pydantic here is the JSON edge: the field names and values are the token's, byte for byte.
Fields a verdict always carries have the defaults of a verdict that names no evidence, so a
missing field reads as "not established", never as a pass; unknown fields are kept (a newer
verifier may add some), and a field of the wrong type is a typed error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cllm.policy import Status

__all__ = [
    "Claims",
    "ComponentClaim",
    "GpuClaim",
    "GpuError",
    "GpuMeasurements",
    "KeysClaim",
    "PolicyClaim",
    "ReasonClaim",
    "ReferenceClaim",
    "ReleaseClaim",
    "TcbClaim",
    "TdClaim",
    "TokenClaims",
    "UpstreamClaim",
]


class _Claim(BaseModel):
    # Strict: "yes" is not a bool, "1" not an int (a token's types are its meaning).
    model_config = ConfigDict(frozen=True, extra="allow", strict=True)


class TcbClaim(_Claim):
    status: str | None = Field(default=None, description="Intel TCB status, e.g. UpToDate")
    advisory_ids: list[str] = Field(default_factory=list)
    collateral_expires: int | None = Field(
        default=None, description="Unix seconds: first expiry among the collateral used"
    )


class TdClaim(_Claim):
    """The TD report's registers, hex (``debug`` as the TD attributes say)."""

    mrtd: str | None = None
    rtmr0: str | None = None
    rtmr1: str | None = None
    rtmr2: str | None = None
    rtmr3: str | None = None
    td_attributes: str | None = None
    xfam: str | None = None
    mr_seam: str | None = None
    debug: bool | None = None
    mrconfigid: str | None = None
    mrowner: str | None = None
    mrownerconfig: str | None = None
    mrservicetd: str | None = None


class ComponentClaim(_Claim):
    type: str
    name: str
    digest: str = Field(description="SHA-384, hex")


class KeysClaim(_Claim):
    """The keys the evidence binds (base64 SPKI / raw X25519; TLS SPKI SHA-256 hex)."""

    nonce: str | None = None
    signing_key: str
    hpke_key: str
    tls_spki_sha256: str | None = None


class PolicyClaim(_Claim):
    id: str | None = None
    sha256: str | None = None


class UpstreamClaim(_Claim):
    scope: Literal["embedded", "loopback", "remote", "unknown"] = "unknown"
    host: str | None = None


class ReleaseClaim(_Claim):
    """A signed release the policy's reference values came from (``Release.summary``)."""

    name: str | None = None
    version: str | None = None
    created: int | None = None
    publisher_key_sha256: str | None = None
    manifest_sha256: str | None = None
    boot: list[str] = Field(default_factory=list)
    components: list[str] = Field(default_factory=list)


class ReferenceClaim(_Claim):
    """What the verdict rests on: whether the boot chain and every measured component were
    pinned by reference values, which component types, by which releases."""

    boot_chain: bool = False
    components: bool = False
    pinned_types: list[str] = Field(default_factory=list)
    releases: list[ReleaseClaim] = Field(default_factory=list)


class ReasonClaim(_Claim):
    code: str
    message: str


class GpuMeasurements(_Claim):
    result: Literal["matched", "mismatched", "not_appraised"] = "not_appraised"
    mismatched_indices: list[int] = Field(default_factory=list)


class GpuError(_Claim):
    code: str
    message: str


class GpuClaim(_Claim):
    """One GPU of the evidence (``claims["gpus"]``). ``unattested``: the server says the GPU
    is present but gave no report for it."""

    index: int
    ueid: str | None = None
    hwmodel: str | None = None
    arch: Literal["hopper", "blackwell"] | None = None
    driver_version: str | None = None
    vbios_version: str | None = None
    mode: str | None = Field(default=None, description="CC mode as the evidence says")
    status: Literal["verified", "rejected", "unattested"]
    measurements: GpuMeasurements = Field(default_factory=GpuMeasurements)
    rim_ids: list[str] = Field(default_factory=list)
    ocsp: Literal["good", "unknown", "revoked", "off", "not_checked"] = "not_checked"
    simulated: bool
    error: GpuError | None = None


class Claims(_Claim):
    """What an appraisal establishes (the token's claims without status, reasons and the
    registered claims)."""

    nonce: str | None = Field(default=None, description="the client's nonce, hex")
    tee: str | None = Field(default=None, description='"tdx" or "simulated-tdx"')
    simulated: bool = False
    tcb: TcbClaim | None = None
    td: TdClaim | None = None
    components: list[ComponentClaim] = Field(default_factory=list)
    keys: KeysClaim | None = None
    policy: PolicyClaim | None = None
    reference: ReferenceClaim | None = None
    upstream: UpstreamClaim = Field(default_factory=UpstreamClaim)
    gpus: list[GpuClaim] = Field(default_factory=list)

    @classmethod
    def parse(cls, claims: Mapping[str, Any]) -> Claims:
        return cls.model_validate(dict(claims))


class TokenClaims(Claims):
    """An attestation token's payload: the claims, the verdict, and the registered claims."""

    status: Status = Field(default=Status.CONTRAINDICATED, strict=False)  # from its value
    reasons: list[ReasonClaim] = Field(default_factory=list)
    iss: str | None = None
    iat: int | None = None
    nbf: int | None = None
    exp: int | None = None
    jti: str | None = None
