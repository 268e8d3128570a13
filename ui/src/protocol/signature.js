// Signed answers (docs/protocol.md "Signed answers"), checked with WebCrypto: ECDSA P-256 with
// SHA-256 over "cllm/1 answer-signature" || 0x00 || SHA-256(request) || SHA-256(answer).
import {
  ProtocolError,
  concat,
  equalBytes,
  fromBase64,
  fromHex,
  lastIndexOf,
  sha256,
  toBase64,
  toHex,
  utf8,
} from "./bytes.js";

const MARKER = utf8(',"cllm_signature":');
export const SIGNATURE_DOMAIN = utf8("cllm/1 answer-signature\u0000");
const MEMBER =
  /^\{"alg":"ecdsa-p256-sha256","request_sha256":"([0-9a-f]{64})","answer_sha256":"([0-9a-f]{64})","sig":"([A-Za-z0-9+/]+={0,2})"\}/;
// What may follow the member's own "}": the record's "}" and one of four constant tails.
const TAILS = new Set(["}", "}\n", "}\n\n", "}\n\ndata: [DONE]\n\n"]);

/** DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs) -> raw r || s (64 bytes), or null. */
export function derToRaw(der) {
  if (der.length < 8 || der[0] !== 0x30 || der[1] !== der.length - 2 || der[1] > 0x7f) {
    return null;
  }
  const out = new Uint8Array(64);
  let offset = 2;
  for (let part = 0; part < 2; part += 1) {
    if (der[offset] !== 0x02) return null;
    const size = der[offset + 1];
    if (size === undefined || size === 0 || size > 33 || offset + 2 + size > der.length) {
      return null;
    }
    let value = der.subarray(offset + 2, offset + 2 + size);
    if (value[0] & 0x80) return null; // negative
    if (value.length > 1 && value[0] === 0 && !(value[1] & 0x80)) return null; // not minimal
    if (value[0] === 0) value = value.subarray(1);
    if (value.length > 32) return null;
    out.set(value, part * 32 + (32 - value.length));
    offset += 2 + size;
  }
  return offset === der.length ? out : null;
}

export async function importSigningKey(spki) {
  try {
    return await crypto.subtle.importKey(
      "spki",
      spki,
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["verify"],
    );
  } catch {
    throw new ProtocolError("signing_key_invalid", "the signing key is not P-256 SPKI DER");
  }
}

/**
 * Check the signature of a whole answer `body` (bytes: the plaintext JSON, SSE or NDJSON) for
 * the request body `requestBody` (bytes) under the attested `signingKey` (SPKI DER bytes).
 * Returns {requestSha256, answerSha256}; throws ProtocolError (signature_* codes).
 */
export async function verifyAnswer(body, requestBody, signingKey) {
  const at = lastIndexOf(body, MARKER);
  if (at < 0) throw new ProtocolError("signature_missing", "the answer carries no signature");
  let rest;
  try {
    rest = new TextDecoder("utf-8", { fatal: true }).decode(body.subarray(at + MARKER.length));
  } catch {
    throw new ProtocolError("signature_malformed", "the signature member is not text");
  }
  const member = MEMBER.exec(rest);
  if (!member) throw new ProtocolError("signature_malformed", "the signature member is malformed");
  if (!TAILS.has(rest.slice(member[0].length))) {
    throw new ProtocolError("signature_trailing_data", "unsigned data follows the signature");
  }
  const [, requestHex, answerHex, sigB64] = member;
  const der = fromBase64(sigB64);
  if (der === null || toBase64(der) !== sigB64) {
    throw new ProtocolError("signature_malformed", "the signature is not canonical base64");
  }
  const requestSha256 = await sha256(requestBody);
  if (toHex(requestSha256) !== requestHex) {
    throw new ProtocolError("signature_request_mismatch", "the answer is for another request");
  }
  const answerSha256 = await sha256(body.subarray(0, at));
  if (!equalBytes(answerSha256, fromHex(answerHex))) {
    throw new ProtocolError("signature_invalid", "the answer does not match its signed hash");
  }
  const key = await importSigningKey(signingKey);
  const raw = derToRaw(der);
  const message = concat(SIGNATURE_DOMAIN, requestSha256, answerSha256);
  const ok =
    raw !== null &&
    (await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, raw, message));
  if (!ok) throw new ProtocolError("signature_invalid", "the signature does not verify");
  return { requestSha256: requestHex, answerSha256: answerHex };
}
