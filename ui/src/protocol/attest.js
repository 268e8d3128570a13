// One attestation check, as the UI runs it for every new chat (docs/design.md §5 and §8):
// fresh nonce -> the server's evidence -> the user's verifier -> a token checked here (ES256
// against the verifier's JWKS, our nonce, sane times, the keys we will use are its keys).
import { fromBase64, toHex } from "./bytes.js";
import { verifyToken } from "./token.js";
import { pinJwks } from "../trust.js";

export const POLICY = "default";

export function normaliseVerifier(url) {
  return typeof url === "string" ? url.trim().replace(/\/+$/, "") : "";
}

function red(reason, extra = {}) {
  return { state: "red", label: "Not verified", reason, ...extra };
}

function reasonText(claims) {
  const reasons = Array.isArray(claims.reasons) ? claims.reasons : [];
  return reasons
    .map((r) => (r && typeof r === "object" ? `${r.code}: ${r.message}` : String(r)))
    .join("; ");
}

async function getJson(fetchImpl, url, init) {
  const response = await fetchImpl(url, { cache: "no-store", credentials: "omit", ...init });
  if (!response.ok) {
    const error = new Error(`HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

/**
 * Run one check. `verifier` is the verifier's base URL; `fetch`, `now` (Unix seconds) and
 * `randomBytes` can be replaced in tests. Never throws: the result's `state` is green, amber or
 * red, with `label` (short), `reason` (a sentence), and, when the token verified, its `claims`.
 * `keys` (raw HPKE key and signing key SPKI) is set only when they are the token's bound keys.
 */
export async function attest({
  verifier,
  fetch: fetchImpl = globalThis.fetch.bind(globalThis),
  now = () => Math.floor(Date.now() / 1000),
  randomBytes = (n) => crypto.getRandomValues(new Uint8Array(n)),
  reportUrl = "/v1/attestation/report",
  pin = null, // RFC 7638 thumbprint of the verifier key the user confirmed
} = {}) {
  const base = normaliseVerifier(verifier);
  const checkedAt = new Date(now() * 1000).toISOString();
  const common = { verifier: base, checkedAt, claims: null, evidenceTee: null, keys: null };
  const nonce = toHex(randomBytes(32));

  let evidence;
  try {
    evidence = await getJson(fetchImpl, `${reportUrl}?nonce=${nonce}`);
  } catch (error) {
    return red(`The server gave no attestation evidence (${error.message}).`, common);
  }
  const binding = evidence && typeof evidence === "object" ? evidence.binding : null;
  if (!binding || typeof binding !== "object") {
    return red("The server's evidence has no key binding.", common);
  }
  common.evidenceTee = typeof evidence.tee === "string" ? evidence.tee : null;
  if (binding.nonce !== nonce) {
    return red("The server's evidence is not for this check's nonce (replayed?).", common);
  }
  const hpkeKey = fromBase64(binding.hpke_key);
  const signingKey = fromBase64(binding.signing_key);
  if (hpkeKey === null || hpkeKey.length !== 32 || signingKey === null) {
    return red("The server's evidence binds malformed keys.", common);
  }
  if (!base) return red("No verifier is configured: set one in Settings.", common);

  let token;
  try {
    const answer = await getJson(fetchImpl, `${base}/v1/attestation`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ evidence, nonce, policy: POLICY }),
    });
    token = answer && answer.token;
  } catch (error) {
    const why = error.status ? `it answered ${error.message}` : "unreachable";
    return red(`The verifier at ${base} could not check the evidence: ${why}.`, common);
  }
  let jwks;
  try {
    jwks = await getJson(fetchImpl, `${base}/.well-known/jwks.json`);
  } catch (error) {
    return red(`The verifier's keys (JWKS) could not be fetched (${error.message}).`, common);
  }
  try {
    const pinned = await pinJwks(jwks, token, pin);
    jwks = pinned.jwks;
    common.verifierKey = pinned.verifierKey;
  } catch (error) {
    return red(error.message, { ...common, keyChanged: true, verifierKey: error.found });
  }
  let claims;
  try {
    claims = await verifyToken(token, jwks, { now: now() });
  } catch (error) {
    return red(`The verifier's token was rejected: ${error.message} (${error.code}).`, common);
  }
  common.claims = claims;
  if (claims.nonce !== nonce) {
    return red("The token is for another nonce (replayed?).", common);
  }
  const bound = claims.keys && typeof claims.keys === "object" ? claims.keys : {};
  if (
    bound.hpke_key !== binding.hpke_key ||
    bound.signing_key !== binding.signing_key ||
    (bound.tls_spki_sha256 ?? null) !== (binding.tls_spki_sha256 ?? null)
  ) {
    return red("The token binds other keys than the ones the server presented.", common);
  }
  const keys = { hpkeKey, signingKey };
  const simulated =
    claims.simulated !== false || claims.tee !== "tdx" || common.evidenceTee !== "tdx";
  const why = reasonText(claims);
  if (claims.status === "contraindicated") {
    return red(`The verifier found problems: ${why || "contraindicated"}.`, common);
  }
  if (claims.status === "warning" || (claims.status === "affirming" && simulated)) {
    if (simulated) {
      const others = (claims.reasons ?? []).filter((r) => r?.code !== "simulated_evidence");
      const also = others.length ? ` Also: ${reasonText({ reasons: others })}.` : "";
      return {
        state: "amber",
        label: "Simulated TEE",
        reason: `Simulated TEE: the evidence is not from TDX hardware (testing only).${also}`,
        ...common,
        keys,
      };
    }
    return {
      state: "amber",
      label: "Warning",
      reason: `Verified TDX hardware, with warnings: ${why || "warning"}.`,
      ...common,
      keys,
    };
  }
  if (claims.status === "affirming") {
    return {
      state: "green",
      label: "Verified TDX",
      reason: "Genuine, up-to-date Intel TDX running the published components.",
      ...common,
      keys,
    };
  }
  return red("The token has an unknown status.", common);
}
