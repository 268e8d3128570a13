"""Verifying a server before speaking to it: fresh nonce, evidence, then a verdict from the
client's own built-in verifier (``LocalVerifier``) or from a verifier service whose token the
client checks itself (``RemoteVerifier``). Either way the result names the keys the client may
use, taken only from the verified binding."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
import jwt
from pydantic import ValidationError

from cllm.appraisal import Claims, Permit, TokenClaims, Trust, Verdict, permits
from cllm.client._channel import PinnedKeys
from cllm.client._gpus import GpuEntry, gpus_of
from cllm.client._pin import check_verifier_url, jwks_thumbprints
from cllm.client._tls import peer_spki_sha256, tls_finding
from cllm.errors import CllmError
from cllm.evidence import NONCE_SIZE, check_batch, parse_evidence
from cllm.policy import Policy, Reason, Status, default_policy
from cllm.release import PublisherKey, Release, load_release
from cllm.token import verify_token

__all__ = [
    "LocalVerifier",
    "RemoteVerifier",
    "Status",
    "Verification",
    "Verifier",
    "attest",
    "verification_of",
]

_log = logging.getLogger(__name__)


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
    # When the verdict stops vouching for the keys (the token's ``exp``; for the local
    # verifier, checked_at + the policy's max_token_age): clients verify again from then on.
    expires_at: int | None = field(default=None)
    tls: Mapping[str, Any] | None = field(default=None)  # see _tls.tls_finding
    verifier_key: str | None = field(default=None)  # RFC 7638 thumbprint of the token's key

    @property
    def trusted(self) -> bool:
        """Whether the keys may be used when warnings are allowed (``permits()``)."""
        return self.permits().permitted

    def permits(self, *, allow_warning: bool = True, now: float | None = None) -> Permit:
        """The one decision whether this verdict's keys may be used (``cllm.appraisal.
        permits``): with ``now``, a verdict past ``expires_at`` permits nothing."""
        expired = now is not None and self.expires_at is not None and now >= self.expires_at
        return permits(
            status=self.status,
            has_keys=self.keys is not None,
            allow_warning=allow_warning,
            expired=expired,
        )

    @property
    def typed_claims(self) -> Claims:
        """``claims`` typed (``cllm.appraisal.Claims``); claims that do not parse (those of a
        token refused as malformed) read as a verdict that established nothing."""
        try:
            return Claims.parse(self.claims)
        except ValidationError:
            return Claims()

    @property
    def simulated(self) -> bool:
        return bool(self.claims.get("simulated"))

    @property
    def gpus(self) -> tuple[GpuEntry, ...]:
        """The verdict's GPUs (the ``gpus`` claim), typed; empty when it names none."""
        return gpus_of(self.claims)

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
            "gpus",
        ):
            doc[name] = self.claims.get(name)
        doc["simulated"] = bool(doc["simulated"])
        doc["verifier"] = self.verifier
        doc["checked_at"] = self.checked_at
        doc["expires_at"] = self.expires_at
        doc["verifier_key"] = self.verifier_key
        doc["tls"] = dict(self.tls) if self.tls is not None else None
        return doc


class Verifier(Protocol):
    @property
    def name(self) -> str: ...

    def appraise(self, document: Mapping[str, Any], *, nonce: bytes) -> Verification: ...


def _failed(
    code: str, message: str, *, verifier: str, at: int, claims: Mapping[str, Any] | None = None
) -> Verification:
    return Verification(
        status=Status.CONTRAINDICATED,
        reasons=(Reason(code, message),),
        claims=dict(claims or {}),
        verifier=verifier,
        checked_at=at,
    )


def _keys_of(claims: Mapping[str, Any]) -> PinnedKeys:
    keys = claims["keys"]
    tls = keys.get("tls_spki_sha256")
    return PinnedKeys(
        signing_key=base64.b64decode(keys["signing_key"], validate=True),
        hpke_key=base64.b64decode(keys["hpke_key"], validate=True),
        tls_spki_sha256=bytes.fromhex(tls) if tls else None,
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
        trust_simulated_gpu_root: Path | None = None,
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
        trust = Trust.production(
            collateral_dir=collateral_dir, pccs_url=pccs_url, http=http, clock=clock
        )
        if trust_simulated_root is not None:
            trust = trust.with_simulated_root(trust_simulated_root)
        if trust_simulated_gpu_root is not None:
            trust = trust.with_simulated_gpu_root(trust_simulated_gpu_root)
        self._appraiser = trust.appraiser()

    @property
    def name(self) -> str:
        return "local"

    def appraise(self, document: Mapping[str, Any], *, nonce: bytes) -> Verification:
        at = int(self._clock())
        try:
            verdict = self._appraiser.appraise(document, nonce=nonce, policy=self._policy, at=at)
            return verification_of(
                verdict, checked_at=at, expires_at=at + self._policy.max_token_age
            )
        except Exception as exc:  # a refusal with a reason, never a traceback
            _log.exception("local appraisal failed unexpectedly")
            return _failed(
                "internal_error",
                f"unexpected {type(exc).__name__} during appraisal",
                verifier="local",
                at=at,
            )


def verification_of(
    verdict: Verdict, *, checked_at: int, expires_at: int, verifier: str = "local"
) -> Verification:
    """The client's view of an appraisal's verdict: its keys only when ``permits`` allows
    them (``LocalVerifier``, ``cllm evidence check``)."""
    permit = permits(status=verdict.status, has_keys=verdict.claims.get("keys") is not None)
    return Verification(
        status=Status(verdict.status),
        reasons=verdict.reasons,
        claims=dict(verdict.claims),
        verifier=verifier,
        checked_at=checked_at,
        keys=_keys_of(verdict.claims) if permit.permitted else None,
        expires_at=expires_at,
    )


class RemoteVerifier:
    """A verifier service (``cllm verifier serve``). Its token is checked here: ES256 signature
    against its JWKS, lifetime, our nonce, and the keys it vouches for against the keys in the
    evidence we will use. The URL must be ``https://`` (``http://`` only on loopback:
    ``verifier_insecure``); ``key_pin`` (an RFC 7638 thumbprint, see ``parse_verifier_key``)
    makes any token not signed by that key fail with ``verifier_key_mismatch``."""

    def __init__(
        self,
        url: str,
        *,
        policy_id: str = "default",
        key_pin: str | None = None,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = check_verifier_url(url)
        self._key_pin = key_pin
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
        if self._key_pin is None:
            return jwks
        # Only the pinned key may sign: the rest of the JWKS is dropped before any token is
        # looked at, so a token by another key fails as signed by an unknown key.
        thumbprints = jwks_thumbprints(jwks)
        pinned = [
            entry
            for entry in jwks.get("keys", [])
            if isinstance(entry, Mapping)
            and thumbprints.get(str(entry.get("kid"))) == self._key_pin
        ]
        return {"keys": pinned}

    def _unpinned(self, at: int) -> Verification:
        return _failed(
            "verifier_key_mismatch",
            f"the verifier's token is not signed by the pinned key {self._key_pin}",
            verifier=self._url,
            at=at,
        )

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
                try:
                    claims = verify_token(token, jwks=self._jwks, now=at, leeway=5)
                except CllmError as again:
                    if again.code == "token_unknown_kid" and self._key_pin is not None:
                        return self._unpinned(at)
                    raise
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
        # The token verified under the key of its kid: name that key by its own thumbprint.
        kid = str(jwt.get_unverified_header(token).get("kid"))
        key = jwks_thumbprints(self._jwks or {}).get(kid)
        return self._check_claims(claims, document, nonce=nonce, at=at, key=key)

    def _check_claims(
        self,
        claims: Mapping[str, Any],
        document: Mapping[str, Any],
        *,
        nonce: bytes,
        at: int,
        key: str | None = None,
    ) -> Verification:
        raw_status = claims.get("status", "contraindicated")
        if raw_status not in tuple(Status):
            return _failed(
                "verifier_malformed",
                f"unknown status {raw_status!r}",
                verifier=self._url,
                at=at,
                claims=claims,
            )
        try:
            # Typed once (cllm.appraisal.TokenClaims): a claim of the wrong type is malformed.
            typed = TokenClaims.model_validate(dict(claims))
        except ValidationError as exc:
            return _failed(
                "verifier_malformed",
                f"the verifier's claims are malformed: {exc.error_count()} invalid field(s)",
                verifier=self._url,
                at=at,
                claims=claims,
            )
        status = typed.status
        reasons = tuple(Reason(reason.code, reason.message) for reason in typed.reasons)
        if claims.get("nonce") != nonce.hex():
            return _failed(
                "token_nonce_mismatch",
                "the token is not about our request (its nonce is not ours)",
                verifier=self._url,
                at=at,
                claims=claims,
            )
        if status == Status.CONTRAINDICATED and claims.get("keys") is None:
            # A refusal that names no keys grants nothing: its own reasons (appraisal_timeout,
            # internal_error, ...) say why, better than a keys mismatch would.
            return Verification(status, reasons, dict(claims), self._url, at, None)
        try:
            evidence = parse_evidence(document)
            check_batch(evidence, expected_nonce=nonce)  # our own nonce's proof, ourselves
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
        permit = permits(status=status, has_keys=claims.get("keys") is not None)
        keys = _keys_of(claims) if permit.permitted else None
        return Verification(
            status, reasons, dict(claims), self._url, at, keys, claims.get("exp"), None, key
        )


def _get_evidence(server: httpx.Client, nonce: bytes) -> tuple[httpx.Response, bytes | None]:
    """The evidence response, and the SPKI hash of the TLS key the connection presented
    (read while the connection is surely the one that carried it; None for plain HTTP)."""
    with server.stream("GET", "/v1/attestation/report", params={"nonce": nonce.hex()}) as got:
        presented = peer_spki_sha256(got)
        got.read()
    return got, presented


RETRIES: Final = 5
RETRY_STATUSES: Final = frozenset({429, 503})
MAX_RETRY_WAIT: Final = 30.0  # seconds, all retries together
_BACKOFF: Final = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def retry_delay(retry_after: str | None, attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): the server's ``Retry-After``
    (delta-seconds, capped at 10) when it gave a usable one, never less than exponential
    backoff (a server saying 0 cannot make us spin), with jitter so clients turned away
    together do not come back together."""
    base = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
    if retry_after is not None and retry_after.strip().isdigit():
        base = max(base, min(float(retry_after.strip()), 10.0))
    return base * (1 + secrets.randbelow(250) / 1000)


def attest(
    server: httpx.Client,
    verifier: Verifier,
    *,
    random: Callable[[int], bytes] = os.urandom,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Verification:
    """Fresh evidence from ``server`` (whose base URL is the cllm server) for a new nonce,
    appraised by ``verifier``. Never raises for a server or verifier that misbehaves: the
    result is then ``contraindicated`` with a reason. A 429 or 503 (the server is busy, or this
    client is over its share) is retried with backoff, honouring ``Retry-After``."""
    nonce = random(NONCE_SIZE)
    at = int(clock())
    waited = 0.0
    for attempt in range(RETRIES + 1):
        try:
            response, presented = _get_evidence(server, nonce)
        except httpx.HTTPError as exc:
            return _failed(
                "server_unreachable",
                f"cannot fetch evidence from {server.base_url}: {type(exc).__name__}",
                verifier=verifier.name,
                at=at,
            )
        if response.status_code not in RETRY_STATUSES:
            break
        # Busy or over our share: not a verdict on the server. Wait as told (or back off),
        # within a bound, then ask again with the same nonce; never give up trust for it.
        delay = retry_delay(response.headers.get("retry-after"), attempt)
        if attempt == RETRIES or waited + delay > MAX_RETRY_WAIT:
            return _failed(
                "evidence_rate_limited" if response.status_code == 429 else "evidence_unavailable",
                f"the server answered HTTP {response.status_code} for evidence "
                f"{attempt + 1} times (busy); try again later",
                verifier=verifier.name,
                at=at,
            )
        sleep(delay)
        waited += delay
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
    return _with_tls(verifier.appraise(document, nonce=nonce), presented)


def _with_tls(result: Verification, presented: bytes | None) -> Verification:
    """The verdict with what it means for TLS: a bound TLS key that the connection did not
    present turns it ``contraindicated`` (``tls_binding_mismatch``); no bound key is said."""
    keys = result.claims.get("keys")
    bound_hex = keys.get("tls_spki_sha256") if isinstance(keys, Mapping) else None
    try:
        bound = bytes.fromhex(bound_hex) if isinstance(bound_hex, str) else None
    except ValueError:
        bound = None
    finding = tls_finding(bound, presented)
    if bound is not None and presented != bound:
        seen = presented.hex() if presented is not None else "no TLS certificate"
        return replace(
            result,
            status=Status.CONTRAINDICATED,
            reasons=(
                *result.reasons,
                Reason(
                    "tls_binding_mismatch",
                    f"the evidence binds TLS key sha256:{bound.hex()} but the connection "
                    f"presented {seen}: TLS was terminated before the TD",
                ),
            ),
            keys=None,
            tls=finding,
        )
    return replace(result, tls=finding)
