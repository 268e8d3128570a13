// Who vouches for the verdict the page shows, and how far it can be trusted.
//
// * Served by the user's own `cllm proxy` (a loopback origin that answers /cllm/status): the
//   verdict is the proxy's, reached with the verifier, key pin and policy of the user's trust
//   configuration; the page sends plain JSON to the proxy, which seals it to the attested key,
//   and still checks each answer's signature itself.
// * Served by the server being verified: the page's code and, unless the user chose one, the
//   verifier come from that server. A server-suggested verifier is never green: a server with
//   no TEE can name a "verifier" of its own that signs anything. A verifier the user chose is
//   remembered with the thumbprint of its key and re-confirmed when that key changes.
import { fromBase64 } from "./protocol/bytes.js";

const encoder = new TextEncoder();

function base64url(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** RFC 7638 thumbprint of an EC P-256 JWK (the verifier's `kid`, recomputed here). */
export async function thumbprint(jwk) {
  if (!jwk || jwk.kty !== "EC" || jwk.crv !== "P-256") return null;
  if (typeof jwk.x !== "string" || typeof jwk.y !== "string") return null;
  const canonical = `{"crv":"P-256","kty":"EC","x":${JSON.stringify(jwk.x)},"y":${JSON.stringify(jwk.y)}}`;
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(canonical));
  return base64url(new Uint8Array(digest));
}

function tokenKid(token) {
  try {
    const header = JSON.parse(new TextDecoder().decode(fromBase64(token.split(".")[0], { url: true })));
    return typeof header.kid === "string" ? header.kid : null;
  } catch {
    return null;
  }
}

/**
 * The JWKS narrowed to the pinned key (when `pin` is set), and the thumbprint of the key the
 * token names. Throws an Error with `found` (the verifier's current thumbprints) when the
 * pinned key is not among them: the verifier's key changed.
 */
export async function pinJwks(jwks, token, pin) {
  const keys = jwks && Array.isArray(jwks.keys) ? jwks.keys : [];
  const prints = await Promise.all(keys.map((key) => thumbprint(key)));
  const kid = typeof token === "string" ? tokenKid(token) : null;
  const index = keys.findIndex((key) => key && key.kid === kid);
  const verifierKey = index >= 0 ? prints[index] : null;
  if (!pin) return { jwks, verifierKey };
  const kept = keys.filter((_, i) => prints[i] === pin);
  if (!kept.length || verifierKey !== pin) {
    const error = new Error(
      `The verifier's key has changed: you confirmed ${pin}, it now signs with ` +
        `${verifierKey ?? (prints.filter(Boolean).join(", ") || "an unknown key")}. ` +
        "Sending is blocked until you confirm the new key in Settings.",
    );
    error.found = verifierKey ?? prints.find(Boolean) ?? null;
    throw error;
  }
  return { jwks: { keys: kept }, verifierKey };
}

export const SERVER_CHOSE =
  "The server chose its own verifier: a server can vouch for itself, so this page cannot " +
  "show it as verified. Run `cllm proxy` on your own machine (or choose a verifier you trust " +
  "in Settings) for a verdict you can rely on.";

/** A result from a verifier the server suggested: never green, and saying why. */
export function capServerChosen(result) {
  const capped = { ...result, notice: SERVER_CHOSE, verifierSource: "server" };
  if (result.state === "green") {
    return {
      ...capped,
      state: "amber",
      label: "Server-chosen verifier",
      reason: `${result.reason} But ${SERVER_CHOSE[0].toLowerCase()}${SERVER_CHOSE.slice(1)}`,
    };
  }
  return capped;
}

export function isLoopbackHost(hostname) {
  const host = String(hostname).replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host);
}

/** The proxy's /cllm/status document, or null when this page is not served by `cllm proxy`. */
export async function proxyStatus({ refresh = false, fetch: fetchImpl = globalThis.fetch.bind(globalThis) } = {}) {
  try {
    const response = await fetchImpl(`/cllm/status${refresh ? "?refresh=1" : ""}`, {
      cache: "no-store",
      credentials: "omit",
    });
    if (!response.ok) return null;
    const doc = await response.json();
    return doc && typeof doc === "object" && doc.proxy && typeof doc.status === "string" ? doc : null;
  } catch {
    return null;
  }
}

const SIMULATED_REASON = "simulated_evidence";

/** The badge result for a /cllm/status document (the verdict of the user's own proxy). */
export function fromProxyStatus(doc, { hostname = location.hostname } = {}) {
  const reasons = Array.isArray(doc.reasons) ? doc.reasons : [];
  const why = reasons.map((r) => `${r?.code}: ${r?.message}`).join("; ");
  const common = {
    verifier: `${doc.verifier} (your cllm proxy)`,
    verifierSource: "proxy",
    verifierKey: doc.verifier_key ?? null,
    checkedAt: Number.isFinite(doc.checked_at) ? new Date(doc.checked_at * 1000).toISOString() : null,
    claims: { ...doc, exp: doc.expires_at },
    evidenceTee: doc.tee ?? null,
    expiresAt: Number.isFinite(doc.expires_at) ? doc.expires_at : null,
    keys: null,
  };
  const signingKey = fromBase64(doc.keys?.signing_key);
  if (doc.status === "contraindicated" || !signingKey) {
    return { ...common, state: "red", label: "Not verified", reason: `Your cllm proxy refused the server: ${why || "contraindicated"}.` };
  }
  const keys = { hpkeKey: null, signingKey, viaProxy: true };
  let result;
  if (doc.simulated || doc.tee !== "tdx") {
    const others = reasons.filter((r) => r?.code !== SIMULATED_REASON);
    const also = others.length ? ` Also: ${others.map((r) => `${r.code}: ${r.message}`).join("; ")}.` : "";
    result = { ...common, keys, state: "amber", label: "Simulated TEE", reason: `Simulated TEE: the evidence is not from TDX hardware (testing only).${also}` };
  } else if (doc.status === "warning") {
    result = { ...common, keys, state: "amber", label: "Warning", reason: `Verified TDX hardware, with warnings: ${why || "warning"}.` };
  } else {
    result = { ...common, keys, state: "green", label: "Verified TDX", reason: "Genuine, up-to-date Intel TDX running the published components, verified by your cllm proxy." };
  }
  if (!isLoopbackHost(hostname)) {
    // Another machine could answer /cllm/status with anything: at most amber.
    const notice = "This page is not served from your own machine, so the proxy it shows could be anyone's.";
    result = { ...result, notice, state: result.state === "green" ? "amber" : result.state };
  }
  return result;
}

/**
 * When (this browser's clock, seconds) `result` stops vouching for its keys: its lifetime
 * (token exp - iat, or the proxy's expires_at - checked_at) counted from `now`, when it
 * arrived, so a browser clock that is off does not make every verdict look expired (or
 * everlasting). Null when it names no expiry.
 */
export function localExpiry(result, now = Date.now() / 1000) {
  const claims = result?.claims;
  let lifetime = null;
  if (Number.isFinite(claims?.exp) && Number.isFinite(claims?.iat)) lifetime = claims.exp - claims.iat;
  else if (Number.isFinite(result?.expiresAt) && Number.isFinite(claims?.checked_at)) {
    lifetime = result.expiresAt - claims.checked_at;
  }
  return lifetime === null ? null : now + Math.max(0, lifetime);
}

/** Seconds until `result` stops vouching for its keys (Infinity when it names no expiry). */
export function secondsLeft(result, now = Date.now() / 1000) {
  const until = result?.expiresLocal;
  return Number.isFinite(until) ? until - now : Infinity;
}
