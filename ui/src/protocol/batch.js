// Batched evidence (evidence version 2, docs/protocol.md): one quote answers a batch of
// clients. Its REPORTDATA is SHA-256(JCS(batch binding)) || batch root, the root of an RFC 9162
// Merkle tree over the clients' nonces. This page checks, itself, that the quote binds the root
// and that the audit path leads from its own nonce to that root; the first half (the keys) is
// the verifier's to check, as in version 1, and the token must then vouch for exactly these keys.
import { concat, equalBytes, fromBase64, fromHex, sha256, ProtocolError } from "./bytes.js";

const HEADER_SIZE = 48;
const TD_REPORT_DATA = 0x208; // within the TD report body
const V5_BODY_DESCRIPTOR = 6; // body type (2) and size (4) before a v5 body
const MAX_TREE_SIZE = 1 << 20;
const MAX_PATH = 20;
const HEX64 = /^[0-9a-f]{64}$/;

export function leafHash(leaf) {
  return sha256(concat(new Uint8Array([0]), leaf));
}

export function nodeHash(left, right) {
  return sha256(concat(new Uint8Array([1]), left, right));
}

/** RFC 9162 section 2.1.3.2: the root `proof` leads to from `leaf` (throws batch_index_mismatch
 * when the index, size and path length do not fit together). */
export async function rootFromProof(leaf, proof) {
  const size = proof.tree_size;
  const index = proof.leaf_index;
  const path = proof.path;
  const fits =
    Number.isSafeInteger(size) && Number.isSafeInteger(index) && Array.isArray(path) &&
    size > 0 && size <= MAX_TREE_SIZE && index >= 0 && index < size && path.length <= MAX_PATH;
  if (!fits) throw new ProtocolError("batch_index_mismatch", `leaf ${index} is not in a tree of ${size}`);
  let fn = index;
  let sn = size - 1;
  let r = await leafHash(leaf);
  for (const hex of path) {
    if (typeof hex !== "string" || !HEX64.test(hex)) {
      throw new ProtocolError("evidence_malformed", "an audit path entry is not 32 bytes of hex");
    }
    if (sn === 0) throw new ProtocolError("batch_index_mismatch", "the audit path is too long");
    const sibling = fromHex(hex);
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(sibling, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = await nodeHash(r, sibling);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new ProtocolError("batch_index_mismatch", "the audit path is too short");
  return r;
}

/** The 64 REPORTDATA bytes of a TDX quote (version 4, or 5 with a TD report body). */
export function reportData(quote) {
  if (!(quote instanceof Uint8Array) || quote.length < HEADER_SIZE) return null;
  const version = quote[0] | (quote[1] << 8);
  let body = HEADER_SIZE;
  if (version === 5) {
    const type = quote[HEADER_SIZE] | (quote[HEADER_SIZE + 1] << 8);
    if (type !== 2 && type !== 3) return null;
    body += V5_BODY_DESCRIPTOR;
  } else if (version !== 4) {
    return null;
  }
  const start = body + TD_REPORT_DATA;
  return quote.length >= start + 64 ? quote.subarray(start, start + 64) : null;
}

/**
 * Check version 2 evidence for `nonceHex` (this client's nonce); resolves for version 1
 * evidence (nothing batched to check) and throws a ProtocolError with the code a verifier
 * would give: batch_root_unbound, nonce_mismatch, batch_index_mismatch, batch_proof_invalid,
 * evidence_malformed.
 */
export async function checkBatch(evidence, nonceHex) {
  if (!evidence || typeof evidence !== "object") {
    throw new ProtocolError("evidence_malformed", "the evidence is not an object");
  }
  if (evidence.version === 1 && evidence.batch === undefined) return;
  const batch = evidence.batch;
  const binding = evidence.binding;
  if (evidence.version !== 2 || !batch || typeof batch !== "object" || !binding) {
    throw new ProtocolError("evidence_malformed", "unknown evidence version or no batch proof");
  }
  if (typeof batch.root !== "string" || !HEX64.test(batch.root)) {
    throw new ProtocolError("evidence_malformed", "the batch root is not 32 bytes of hex");
  }
  const quote = typeof evidence.quote === "string" ? fromBase64(evidence.quote) : null;
  const data = reportData(quote);
  if (data === null) throw new ProtocolError("evidence_malformed", "the quote is not a TDX quote");
  const root = fromHex(batch.root);
  if (!equalBytes(data.subarray(32), root)) {
    throw new ProtocolError("batch_root_unbound", "the quote binds another batch root");
  }
  if (binding.nonce !== nonceHex) {
    throw new ProtocolError("nonce_mismatch", "the evidence answers another nonce");
  }
  const reached = await rootFromProof(fromHex(nonceHex), batch);
  if (!equalBytes(reached, root)) {
    throw new ProtocolError("batch_proof_invalid", "the audit path does not lead to the root");
  }
}
