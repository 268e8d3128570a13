// One chat completion from the browser: sealed to the attested key (or, for a chat the user
// marked "continue unprotected", in the clear), streamed as SSE, its signature checked.
import { ProtocolError, concat, utf8 } from "./bytes.js";
import { SEALED_RESPONSE_TYPE, requestAad, sealRequest } from "./channel.js";
import { verifyAnswer } from "./signature.js";
import { SseParser } from "./sse.js";

export const CHAT_PATH = "/v1/chat/completions";

/** A readable error text from a plain (unsealed) error body, never the raw HTML of a page. */
function errorMessage(status, text) {
  try {
    const doc = JSON.parse(text);
    const message = doc && doc.error && (doc.error.message || doc.error);
    if (typeof message === "string") return `${message} (HTTP ${status})`;
  } catch {
    // not JSON
  }
  return `the server answered HTTP ${status}`;
}

/**
 * Stream one answer. `request` is the OpenAI chat request object (stream: true); `keys` the
 * attested {hpkeKey, signingKey} or null for an unprotected chat. `onDelta(text)` receives
 * content as it arrives. Resolves to {text, finishReason, signature: {state, code?, message?},
 * error?, aborted?}; `signature.state` is "verified", "invalid" or "unverified".
 */
export async function streamChat({
  request,
  keys,
  signal,
  onDelta,
  headers = {},
  fetch: fetchImpl = globalThis.fetch.bind(globalThis),
}) {
  const body = utf8(JSON.stringify(request));
  const result = { text: "", finishReason: null, signature: { state: "unverified" } };
  let sealed = null;
  let init;
  // keys.hpkeKey null: the page talks to the user's own cllm proxy, which seals; the answer's
  // signature is still checked here with the attested signing key.
  if (keys?.hpkeKey) {
    sealed = await sealRequest(keys.hpkeKey, body, requestAad("POST", CHAT_PATH));
    init = { body: sealed.ciphertext, headers: { ...headers, ...sealed.headers } };
  } else {
    init = { body, headers: { ...headers, "Content-Type": "application/json" } };
  }
  const parser = new SseParser();
  const decoder = new TextDecoder();
  const plaintexts = [];
  const handleEvent = (data) => {
    if (data === "[DONE]") return;
    let doc;
    try {
      doc = JSON.parse(data);
    } catch {
      return;
    }
    if (doc && doc.error) {
      const message = typeof doc.error === "string" ? doc.error : doc.error.message;
      result.error = `The model stopped with an error: ${message || "unknown error"}`;
      return;
    }
    const choice = doc && Array.isArray(doc.choices) ? doc.choices[0] : null;
    if (!choice) return;
    const piece = choice.delta && typeof choice.delta.content === "string" ? choice.delta.content : "";
    if (piece) {
      result.text += piece;
      onDelta?.(piece, result.text);
    }
    if (choice.finish_reason) result.finishReason = choice.finish_reason;
  };
  const consume = (bytes) => {
    plaintexts.push(bytes);
    for (const event of parser.feed(decoder.decode(bytes, { stream: true }))) handleEvent(event);
  };

  let response;
  try {
    response = await fetchImpl(CHAT_PATH, {
      method: "POST",
      cache: "no-store",
      credentials: "omit",
      signal,
      ...init,
    });
  } catch (error) {
    if (signal?.aborted) return { ...result, aborted: true };
    return { ...result, error: `The server could not be reached (${error.message}).` };
  }
  const type = (response.headers.get("content-type") || "").split(";")[0].trim();
  if (sealed && type !== SEALED_RESPONSE_TYPE) {
    // Not sealed: at most an error from something in between, unauthenticated.
    const text = await response.text().catch(() => "");
    const what = response.ok ? "an unsealed answer" : errorMessage(response.status, text);
    return {
      ...result,
      error:
        `Refused ${what}: not from the attested server. ` +
        "If the server restarted, start a new chat to check it again.",
    };
  }
  if (!sealed && !response.ok) {
    const text = await response.text().catch(() => "");
    return { ...result, error: errorMessage(response.status, text) };
  }
  const opener = sealed ? sealed.opener() : null;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (opener) {
        for (const plaintext of await opener.feed(value)) consume(plaintext);
      } else {
        consume(value);
      }
    }
    opener?.close();
    for (const event of parser.feed(decoder.decode() + "\n\n")) handleEvent(event);
  } catch (error) {
    if (signal?.aborted) return { ...result, aborted: true };
    const code = error instanceof ProtocolError ? ` (${error.code})` : "";
    return { ...result, error: `The answer could not be read${code}: ${error.message}` };
  }
  if (opener && !response.ok) {
    // A sealed error: authenticated, shown as the server's message.
    const text = new TextDecoder().decode(concat(...plaintexts));
    return { ...result, error: errorMessage(response.status, text) };
  }
  if (!keys) return result;
  try {
    await verifyAnswer(concat(...plaintexts), body, keys.signingKey);
    result.signature = { state: "verified" };
  } catch (error) {
    result.signature = { state: "invalid", code: error.code, message: error.message };
  }
  return result;
}
