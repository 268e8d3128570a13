// The cllm/1 end-to-end channel of docs/protocol.md, in the browser: the request sealed with
// HPKE (RFC 9180, via @hpke/core) to the attested X25519 key, and the answer opened record by
// record with keys derived from the request's HPKE exporter secret (chunked-OHTTP style).
import { Aes128Gcm, CipherSuite, HkdfSha256 } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";

import { ProtocolError, concat, toBase64, utf8 } from "./bytes.js";

export const REQUEST_INFO = utf8("cllm/1 request");
export const RESPONSE_EXPORT = utf8("cllm/1 response");
export const ENCRYPTION_HEADER = "X-Cllm-Encryption";
export const ENC_HEADER = "X-Cllm-Hpke-Enc";
export const SEALED_REQUEST_TYPE = "application/cllm-hpke";
export const SEALED_RESPONSE_TYPE = "application/cllm-hpke-chunks";

const SECRET_SIZE = 16;
const RESPONSE_NONCE_SIZE = 16;
const TAG_SIZE = 16;
const HEADER_SIZE = 4;
const FINAL_FLAG = 0x80000000;
const MAX_RECORD = 16 * 1024 * 1024;
const FINAL_AAD = utf8("final");
const EMPTY = new Uint8Array(0);

let cachedSuite = null;

function suite() {
  cachedSuite ??= new CipherSuite({
    kem: new DhkemX25519HkdfSha256(),
    kdf: new HkdfSha256(),
    aead: new Aes128Gcm(),
  });
  return cachedSuite;
}

/** "METHOD PATH" as bytes: the associated data of a sealed request. */
export function requestAad(method, path) {
  return utf8(`${method} ${path}`);
}

/** The recipient key pair for `ikm` (RFC 9180 DeriveKeyPair): used by the vector tests. */
export async function deriveKeyPair(ikm) {
  return suite().kem.deriveKeyPair(ikm);
}

/**
 * Seal `body` to the 32-byte X25519 public key `hpkeKey` for the route `aad`.
 * `ekm` (an ephemeral key pair) is for test vectors only; normally it is fresh.
 * Returns the ciphertext, the request headers, and `opener()` for the sealed answer.
 */
export async function sealRequest(hpkeKey, body, aad, { ekm } = {}) {
  if (!(hpkeKey instanceof Uint8Array) || hpkeKey.length !== 32) {
    throw new ProtocolError("hpke_enc_invalid", "the HPKE public key is not 32 bytes");
  }
  const hpke = suite();
  let recipientPublicKey;
  try {
    recipientPublicKey = await hpke.kem.deserializePublicKey(hpkeKey);
  } catch {
    throw new ProtocolError("hpke_enc_invalid", "the HPKE public key is not a valid X25519 key");
  }
  let context;
  try {
    context = await hpke.createSenderContext({ recipientPublicKey, info: REQUEST_INFO, ekm });
  } catch {
    throw new ProtocolError("hpke_enc_invalid", "cannot set up HPKE to this key");
  }
  const ciphertext = new Uint8Array(await context.seal(body, aad));
  const enc = new Uint8Array(context.enc);
  const secret = new Uint8Array(await context.export(RESPONSE_EXPORT, SECRET_SIZE));
  return {
    ciphertext,
    enc,
    secret,
    headers: {
      [ENCRYPTION_HEADER]: "hpke-v1",
      [ENC_HEADER]: toBase64(enc, { url: true }),
      "Content-Type": SEALED_REQUEST_TYPE,
    },
    opener: () => new ResponseOpener(secret, enc),
  };
}

/** key (16 bytes) and nonce (12 bytes) of a sealed answer, as docs/protocol.md derives them. */
export async function deriveResponseKeys(secret, enc, responseNonce) {
  const salt = concat(enc, responseNonce);
  // WebCrypto's HKDF is Extract-then-Expand; the same PRK feeds both labels.
  const ikm = await crypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveBits"]);
  const expand = async (label, bytes) =>
    new Uint8Array(
      await crypto.subtle.deriveBits(
        { name: "HKDF", hash: "SHA-256", salt, info: utf8(label) },
        ikm,
        bytes * 8,
      ),
    );
  return { key: await expand("key", 16), nonce: await expand("nonce", 12) };
}

function recordNonce(base, counter) {
  const nonce = base.slice();
  let value = counter;
  for (let i = nonce.length - 1; i >= 0 && value > 0; i -= 1) {
    nonce[i] ^= value % 256;
    value = Math.floor(value / 256);
  }
  return nonce;
}

/**
 * Opens a sealed answer as its bytes arrive: `await feed(chunk)` returns the plaintexts of the
 * records completed by `chunk` (call it sequentially); `close()` throws unless the final record
 * arrived. Failures are ProtocolError with the codes of docs/protocol.md.
 */
export class ResponseOpener {
  constructor(secret, enc) {
    this.secret = secret;
    this.enc = enc;
    this.buffer = EMPTY;
    this.key = null;
    this.baseNonce = null;
    this.counter = 0;
    this.finished = false;
    this.failed = null;
  }

  get done() {
    return this.finished;
  }

  async feed(chunk) {
    if (this.failed) throw this.failed;
    try {
      return await this.#feed(chunk);
    } catch (error) {
      this.failed = error;
      throw error;
    }
  }

  async #feed(chunk) {
    if (chunk.length === 0) return [];
    if (this.finished) {
      throw new ProtocolError("response_trailing_data", "bytes after the final record");
    }
    this.buffer = this.buffer.length ? concat(this.buffer, chunk) : chunk.slice();
    const out = [];
    if (this.key === null) {
      if (this.buffer.length < RESPONSE_NONCE_SIZE) return out;
      const responseNonce = this.buffer.subarray(0, RESPONSE_NONCE_SIZE);
      const { key, nonce } = await deriveResponseKeys(this.secret, this.enc, responseNonce);
      this.key = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["decrypt"]);
      this.baseNonce = nonce;
      this.buffer = this.buffer.slice(RESPONSE_NONCE_SIZE);
    }
    while (this.buffer.length >= HEADER_SIZE) {
      if (this.finished) {
        throw new ProtocolError("response_trailing_data", "bytes after the final record");
      }
      const view = new DataView(this.buffer.buffer, this.buffer.byteOffset, HEADER_SIZE);
      const header = view.getUint32(0, false);
      const final = (header & FINAL_FLAG) !== 0;
      const size = header & ~FINAL_FLAG;
      if (size > MAX_RECORD) {
        throw new ProtocolError("response_record_too_large", "a record announces over 16 MiB");
      }
      if (size < TAG_SIZE) {
        throw new ProtocolError("response_chunk_invalid", "a record is shorter than its tag");
      }
      if (this.buffer.length < HEADER_SIZE + size) break;
      const ciphertext = this.buffer.subarray(HEADER_SIZE, HEADER_SIZE + size);
      let plaintext;
      try {
        plaintext = await crypto.subtle.decrypt(
          {
            name: "AES-GCM",
            iv: recordNonce(this.baseNonce, this.counter),
            additionalData: final ? FINAL_AAD : EMPTY,
            tagLength: 128,
          },
          this.key,
          ciphertext,
        );
      } catch {
        throw new ProtocolError("response_chunk_invalid", `record ${this.counter} does not open`);
      }
      out.push(new Uint8Array(plaintext));
      this.counter += 1;
      this.buffer = this.buffer.slice(HEADER_SIZE + size);
      if (final) this.finished = true;
    }
    if (this.finished && this.buffer.length > 0) {
      throw new ProtocolError("response_trailing_data", "bytes after the final record");
    }
    return out;
  }

  close() {
    if (this.failed) throw this.failed;
    if (this.key === null) {
      throw new ProtocolError("response_nonce_missing", "the answer ended within its nonce");
    }
    if (!this.finished) {
      throw new ProtocolError("response_truncated", "the answer ended before its final record");
    }
  }
}
