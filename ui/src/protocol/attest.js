// One attestation check, as the UI runs it for every new chat (docs/design.md §5 and §8):
// fresh nonce -> the server's evidence -> the user's verifier -> a token checked here (ES256
// against the verifier's JWKS, our nonce, sane times, the keys we will use are its keys).
import { checkBatch } from "./batch.js";
import { fromBase64, toHex } from "./bytes.js";
import { pinning, upstreamText } from "./reference.js";
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

// 429 (this client is over its share) and 503 (busy) are not verdicts: wait as told (or back
// off, with jitter), within a bound, and ask again; never offer to go unprotected for them.
const RETRY_STATUSES = new Set([429, 503]);
const RETRY_BACKOFF = [0.25, 0.5, 1, 2, 4, 8];
const RETRIES = 5;
const MAX_RETRY_WAIT = 30; // seconds, all retries of one request together

// The server's Retry-After (capped at 10 s), never less than our own backoff (so a server
// saying 0 cannot make the page spin), with jitter.
export function retryDelay(retryAfter, attempt) {
  let base = RETRY_BACKOFF[Math.min(attempt, RETRY_BACKOFF.length - 1)];
  if (typeof retryAfter === "string" && /^\s*\d+\s*$/.test(retryAfter)) {
    base = Math.max(base, Math.min(Number(retryAfter), 10));
  }
  return base * (1 + Math.random() / 4);
}

async function getJson(fetchImpl, url, init, sleep = null) {
  let waited = 0;
  for (let attempt = 0; ; attempt += 1) {
    const response = await fetchImpl(url, { cache: "no-store", credentials: "omit", ...init });
    if (response.ok) return response.json();
    const delay = retryDelay(response.headers?.get?.("retry-after") ?? null, attempt);
    const again = attempt < RETRIES && waited + delay <= MAX_RETRY_WAIT;
    if (sleep && RETRY_STATUSES.has(response.status) && again) {
      await sleep(delay);
      waited += delay;
      continue;
    }
    const error = new Error(`HTTP ${response.status}`);
    error.status = response.status;
    error.temporary = RETRY_STATUSES.has(response.status);
    throw error;
  }
}

function busy(who, error, extra) {
  return {
    state: "red",
    label: "Busy",
    reason: `${who} is busy (${error.message}): nothing is sent until a check succeeds; checking again shortly.`,
    temporary: true,
    ...extra,
  };
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
  sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000)),
} = {}) {
  const base = normaliseVerifier(verifier);
  const checkedAt = new Date(now() * 1000).toISOString();
  const common = { verifier: base, checkedAt, claims: null, evidenceTee: null, keys: null };
  const nonce = toHex(randomBytes(32));

  let evidence;
  try {
    evidence = await getJson(fetchImpl, `${reportUrl}?nonce=${nonce}`, {}, sleep);
  } catch (error) {
    if (error.temporary) return busy("The server's attestation", error, common);
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
  try {
    await checkBatch(evidence, nonce); // our own nonce's proof, checked here too
  } catch (error) {
    return red(`The server's evidence does not cover this check: ${error.code}: ${error.message}.`, common);
  }
  if (!base) return red("No verifier is configured: set one in Settings.", common);

  let token;
  try {
    const answer = await getJson(fetchImpl, `${base}/v1/attestation`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ evidence, nonce, policy: POLICY }),
    }, sleep);
    token = answer && answer.token;
  } catch (error) {
    if (error.temporary) return busy(`The verifier at ${base}`, error, common);
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
  const software = pinning(claims); // reference values: which software was pinned, by whom
  const where = upstreamText(claims);
  const tcb = claims.tcb && typeof claims.tcb === "object" ? String(claims.tcb.status) : "unknown";
  if (claims.status === "contraindicated") {
    return red(`The verifier found problems: ${why || "contraindicated"}.`, common);
  }
  // "affirming" from a verifier that does not say the software was pinned is not green.
  if (
    claims.status === "warning" ||
    (claims.status === "affirming" && (simulated || !software.pinned))
  ) {
    if (simulated) {
      const others = (claims.reasons ?? []).filter((r) => r?.code !== "simulated_evidence");
      const also = others.length ? ` Also: ${reasonText({ reasons: others })}.` : "";
      return {
        state: "amber",
        label: "Simulated TEE",
        reason: `Simulated TEE: the evidence is not from TDX hardware (testing only); ${software.text}; ${where}.${also}`,
        ...common,
        keys,
      };
    }
    if (!software.pinned) {
      return {
        state: "amber",
        label: "Not pinned",
        reason: `Genuine Intel TDX hardware (TCB ${tcb}), but ${software.text}; ${where}.${why ? ` Reasons: ${why}.` : ""}`,
        ...common,
        keys,
      };
    }
    return {
      state: "amber",
      label: "Warning",
      reason: `Verified TDX hardware, with warnings: ${why || "warning"}; ${software.text}; ${where}.`,
      ...common,
      keys,
    };
  }
  if (claims.status === "affirming") {
    // Green says exactly this: genuine hardware, the TCB status, what was pinned by whom.
    return {
      state: "green",
      label: "Verified TDX",
      reason: `Genuine Intel TDX (TCB ${tcb}); ${software.text}; ${where}.`,
      ...common,
      keys,
    };
  }
  return red("The token has an unknown status.", common);
}
