"""Verifying a server before speaking to it: fresh nonce, evidence, then a verdict from the
client's own built-in verifier (``LocalVerifier``) or from a verifier service whose token the
client checks itself (``RemoteVerifier``). Either way the result names the keys the client may
use, taken only from the verified binding."""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from cllm.client._channel import PinnedKeys
from cllm.errors import CllmError
from cllm.evidence import NONCE_SIZE, parse_evidence
from cllm.policy import Policy, Reason, default_policy
from cllm.release import PublisherKey, Release, load_release
from cllm.tee import simulation_trust_root
from cllm.token import verify_token
from cllm.verifier import CollateralSource, EvidenceAppraiser
from cllm.verify import (
    CollateralFetcher,
    QuoteVerifier,
    default_collateral_url,
    intel_root,
)

__all__ = [
    "LocalVerifier",
    "RemoteVerifier",
    "Status",
    "Verification",
    "Verifier",
    "attest",
]

_log = logging.getLogger(__name__)

Status = Literal["affirming", "warning", "contraindicated"]


@dataclass(frozen=True, slots=True)
class Verification:
    """A verdict on one server at one time. ``claims`` has the token's shape (``tee``,
    ``simulated``, ``tcb``, ``td``, ``components``, ``keys``, ``policy``, ``nonce``);
    ``keys`` is set only when the verdict allows talking to the server."""

    status: Status
    reasons: tuple[Reason, ...]
    claims: Mapping[str, Any]
    verifier: str  # "local" or the verifier service's URL
    checked_at: int
    keys: PinnedKeys | None = field(default=None)

    @property
    def trusted(self) -> bool:
        return self.status != "contraindicated" and self.keys is not None

    @property
    def simulated(self) -> bool:
        return bool(self.claims.get("simulated"))

    @property
    def upstream(self) -> Mapping[str, Any]:
        """Where the server sends prompts, as its measured configuration says: ``{"scope":
        "embedded" | "loopback" | "remote" | "unknown", "host": str | None}``."""
        upstream = self.claims.get("upstream")
        if isinstance(upstream, Mapping) and upstream.get("scope") in (
            "embedded",
            "loopback",
            "remote",
        ):
            return upstream
        return {"scope": "unknown", "host": None}

    @property
    def pinned(self) -> bool:
        """True when the verdict rests on reference values (boot chain or every component)."""
        reference = self.claims.get("reference")
        return isinstance(reference, Mapping) and bool(
            reference.get("boot_chain") or reference.get("components")
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "status": self.status,
            "reasons": [reason.to_json() for reason in self.reasons],
        }
        for name in (
            "tee",
            "simulated",
            "tcb",
            "td",
            "components",
            "keys",
            "policy",
            "reference",
            "upstream",
            "nonce",
        ):
            doc[name] = self.claims.get(name)
        doc["simulated"] = bool(doc["simulated"])
        doc["verifier"] = self.verifier
        doc["checked_at"] = self.checked_at
        return doc


class Verifier(Protocol):
    @property
    def name(self) -> str: ...

    def appraise(self, document: Mapping[str, Any], *, nonce: bytes) -> Verification: ...


def _failed(
    code: str, message: str, *, verifier: str, at: int, claims: Mapping[str, Any] | None = None
) -> Verification:
    return Verification(
        status="contraindicated",
        reasons=(Reason(code, message),),
        claims=dict(claims or {}),
        verifier=verifier,
        checked_at=at,
    )


def _keys_of(claims: Mapping[str, Any]) -> PinnedKeys:
    keys = claims["keys"]
    return PinnedKeys(
        signing_key=base64.b64decode(keys["signing_key"], validate=True),
        hpke_key=base64.b64decode(keys["hpke_key"], validate=True),
    )


class LocalVerifier:
    """The built-in verifier, in this process: the same appraisal the verifier service runs
    (DCAP, binding, event-log and CCEL replay, policy, simulated evidence never better than
    ``warning``), so the verdict depends on no code the server or a third party sent.

    ``release`` and ``publisher_key`` (together) add a signed release's reference values to
    the policy; the manifest's signature is checked here, before any server is contacted."""

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        release: str | os.PathLike[str] | Release | None = None,
        publisher_key: str | os.PathLike[str] | PublisherKey | None = None,
        trust_simulated_root: Path | None = None,
        collateral_dir: Path | None = None,
        pccs_url: str | None = None,
        clock: Callable[[], float] = time.time,
        http: httpx.Client | None = None,
    ) -> None:
        self._policy = policy or default_policy()
        if (release is None) != (publisher_key is None):
            raise CllmError("a release needs the publisher key it is checked with", code="usage")
        if isinstance(release, Release):
            if not isinstance(publisher_key, PublisherKey) or release.publisher != publisher_key:
                raise CllmError(
                    "the release was verified under another publisher key", code="usage"
                )
            self._policy = self._policy.with_release(release)
        elif release is not None and publisher_key is not None:
            # Verified here, before any server is contacted: a bad manifest is an error.
            key = (
                publisher_key
                if isinstance(publisher_key, PublisherKey)
                else Path(os.fspath(publisher_key))
            )
            self._policy = self._policy.with_release(
                load_release(Path(os.fspath(release)), publisher_key=key)
            )
        self._clock = clock
        simulated = None
        if trust_simulated_root is not None:
            root = simulation_trust_root(trust_simulated_root)
            simulated = QuoteVerifier(trust_root=root)
        fetcher = CollateralFetcher(
            base_url=pccs_url or default_collateral_url(),
            client=http or httpx.Client(timeout=30.0),
            clock=clock,
        )
        self._appraiser = EvidenceAppraiser(
            intel=QuoteVerifier(trust_root=intel_root()),
            simulated=simulated,
            collateral=CollateralSource(offline_dir=collateral_dir, fetcher=fetcher),
        )

    @property
    def name(self) -> str:
        return "local"

    def appraise(self, document: Mapping[str, Any], *, nonce: bytes) -> Verification:
        at = int(self._clock())
        verdict = self._appraiser.appraise(document, nonce=nonce, policy=self._policy, at=at)
        trusted = verdict.status != "contraindicated"
        return Verification(
            status=verdict.status,
            reasons=verdict.reasons,
            claims=dict(verdict.claims),
            verifier="local",
            checked_at=at,
            keys=_keys_of(verdict.claims) if trusted else None,
        )


class RemoteVerifier:
    """A verifier service (``cllm verifier serve``). Its token is checked here: ES256 signature
    against its JWKS, lifetime, our nonce, and the keys it vouches for against the keys in the
    evidence we will use."""

    def __init__(
        self,
        url: str,
        *,
        policy_id: str = "default",
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url.rstrip("/")
        self._policy_id = policy_id
        self._http = http or httpx.Client(timeout=30.0)
        self._clock = clock
        self._jwks: Mapping[str, Any] | None = None

    @property
    def name(self) -> str:
        return self._url

    def _fetch_jwks(self) -> Mapping[str, Any]:
        response = self._http.get(f"{self._url}/.well-known/jwks.json")
        response.raise_for_status()
        jwks: Mapping[str, Any] = response.json()
        return jwks

    def appraise(self, document: Mapping[str, Any], *, nonce: bytes) -> Verification:
        at = int(self._clock())
        try:
            response = self._http.post(
                f"{self._url}/v1/attestation",
                json={"evidence": document, "nonce": nonce.hex(), "policy": self._policy_id},
            )
            if response.status_code != 200:
                return _failed(
                    "verifier_refused",
                    f"the verifier answered HTTP {response.status_code}: {response.text[:300]}",
                    verifier=self._url,
                    at=at,
                )
            token = response.json()["token"]
            if self._jwks is None:
                self._jwks = self._fetch_jwks()
            try:
                claims = verify_token(token, jwks=self._jwks, now=at, leeway=5)
            except CllmError as exc:
                if exc.code != "token_unknown_kid":
                    raise
                self._jwks = self._fetch_jwks()  # the verifier may have rotated its key
                claims = verify_token(token, jwks=self._jwks, now=at, leeway=5)
        except httpx.HTTPError as exc:
            return _failed(
                "verifier_unreachable",
                f"cannot reach the verifier at {self._url}: {type(exc).__name__}",
                verifier=self._url,
                at=at,
            )
        except (ValueError, KeyError, TypeError) as exc:
            return _failed(
                "verifier_malformed",
                f"the verifier's answer is malformed: {exc}",
                verifier=self._url,
                at=at,
            )
        except CllmError as exc:
            return _failed(exc.code, exc.message, verifier=self._url, at=at)
        return self._check_claims(claims, document, nonce=nonce, at=at)

    def _check_claims(
        self, claims: Mapping[str, Any], document: Mapping[str, Any], *, nonce: bytes, at: int
    ) -> Verification:
        reasons = tuple(
            Reason(str(r["code"]), str(r["message"])) for r in claims.get("reasons", [])
        )
        status: Status = claims.get("status", "contraindicated")
        if status not in ("affirming", "warning", "contraindicated"):
            return _failed(
                "verifier_malformed",
                f"unknown status {status!r}",
                verifier=self._url,
                at=at,
                claims=claims,
            )
        if claims.get("nonce") != nonce.hex():
            return _failed(
                "token_nonce_mismatch",
                "the token is not about our request (its nonce is not ours)",
                verifier=self._url,
                at=at,
                claims=claims,
            )
        try:
            evidence = parse_evidence(document)
        except CllmError as exc:
            return _failed(exc.code, exc.message, verifier=self._url, at=at, claims=claims)
        if claims.get("keys") != evidence.binding.to_json():
            return _failed(
                "token_keys_mismatch",
                "the token vouches for other keys than the evidence we would use",
                verifier=self._url,
                at=at,
                claims=claims,
            )
        keys = _keys_of(claims) if status != "contraindicated" else None
        return Verification(status, reasons, dict(claims), self._url, at, keys)


def attest(
    server: httpx.Client,
    verifier: Verifier,
    *,
    random: Callable[[int], bytes] = os.urandom,
    clock: Callable[[], float] = time.time,
) -> Verification:
    """Fresh evidence from ``server`` (whose base URL is the cllm server) for a new nonce,
    appraised by ``verifier``. Never raises for a server or verifier that misbehaves: the
    result is then ``contraindicated`` with a reason."""
    nonce = random(NONCE_SIZE)
    at = int(clock())
    try:
        response = server.get("/v1/attestation/report", params={"nonce": nonce.hex()})
    except httpx.HTTPError as exc:
        return _failed(
            "server_unreachable",
            f"cannot fetch evidence from {server.base_url}: {type(exc).__name__}",
            verifier=verifier.name,
            at=at,
        )
    if response.status_code != 200:
        return _failed(
            "evidence_unavailable",
            f"the server answered HTTP {response.status_code} for evidence",
            verifier=verifier.name,
            at=at,
        )
    try:
        document = response.json()
    except ValueError:
        return _failed(
            "evidence_malformed", "the evidence is not JSON", verifier=verifier.name, at=at
        )
    if not isinstance(document, dict):
        return _failed(
            "evidence_malformed", "the evidence is not a JSON object", verifier=verifier.name, at=at
        )
    return verifier.appraise(document, nonce=nonce)
