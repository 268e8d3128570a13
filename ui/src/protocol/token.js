// Attestation tokens (docs/verifier.md): compact JWS, ES256 only, checked with WebCrypto against
// the verifier's JWKS key of the token's `kid`. The token never chooses how it is verified.
import { ProtocolError, fromBase64, utf8 } from "./bytes.js";

const SEGMENT = /^[A-Za-z0-9_-]+$/;
const MAX_TOKEN_CHARS = 64 * 1024;
const MAX_LIFETIME = 24 * 60 * 60;

function decodeJson(segment, what) {
  const bytes = fromBase64(segment, { url: true });
  if (bytes === null) throw new ProtocolError("token_malformed", `the token ${what} is not base64url`);
  try {
    const value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error();
    return value;
  } catch {
    throw new ProtocolError("token_malformed", `the token ${what} is not a JSON object`);
  }
}

/**
 * Verify `token` against `jwks` at `now` (Unix seconds); returns the claims or throws
 * ProtocolError: token_malformed, token_bad_algorithm, token_unknown_kid, token_bad_signature,
 * token_expired, token_not_yet_valid.
 */
export async function verifyToken(token, jwks, { now, leeway = 60 }) {
  if (typeof token !== "string" || token.length > MAX_TOKEN_CHARS) {
    throw new ProtocolError("token_malformed", "not a token");
  }
  const parts = token.split(".");
  if (parts.length !== 3 || !parts.every((part) => SEGMENT.test(part))) {
    throw new ProtocolError("token_malformed", "not a compact JWS");
  }
  const header = decodeJson(parts[0], "header");
  if (header.alg !== "ES256") {
    throw new ProtocolError("token_bad_algorithm", "only ES256 tokens are accepted");
  }
  if ("crit" in header) {
    throw new ProtocolError("token_malformed", "the token header lists critical extensions");
  }
  if (typeof header.kid !== "string") {
    throw new ProtocolError("token_unknown_kid", "the token header has no kid");
  }
  const keys = jwks && Array.isArray(jwks.keys) ? jwks.keys : [];
  const jwk = keys.find((key) => key && key.kid === header.kid);
  if (!jwk || jwk.kty !== "EC" || jwk.crv !== "P-256" || (jwk.alg && jwk.alg !== "ES256")) {
    throw new ProtocolError("token_unknown_kid", "the verifier publishes no P-256 key for this kid");
  }
  let key;
  try {
    key = await crypto.subtle.importKey(
      "jwk",
      { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y, ext: true },
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["verify"],
    );
  } catch {
    throw new ProtocolError("token_unknown_kid", "the verifier's key for this kid is invalid");
  }
  const signature = fromBase64(parts[2], { url: true });
  const signed = utf8(`${parts[0]}.${parts[1]}`);
  const ok =
    signature !== null &&
    signature.length === 64 &&
    (await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, signature, signed));
  if (!ok) throw new ProtocolError("token_bad_signature", "the token signature does not verify");
  const claims = decodeJson(parts[1], "payload");
  const { iat, exp } = claims;
  if (!Number.isInteger(iat) || !Number.isInteger(exp)) {
    throw new ProtocolError("token_malformed", "the token has no integer iat/exp");
  }
  if (exp <= iat || exp - iat > MAX_LIFETIME) {
    throw new ProtocolError("token_malformed", "the token lifetime is not sane");
  }
  if (iat > now + leeway || ("nbf" in claims && !(claims.nbf <= now + leeway))) {
    throw new ProtocolError("token_not_yet_valid", "the token is not valid yet (check the clock)");
  }
  if (now >= exp + leeway) throw new ProtocolError("token_expired", "the token has expired");
  return claims;
}
