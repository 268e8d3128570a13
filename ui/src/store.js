// Everything the UI remembers lives in this browser (localStorage): chats, settings, theme.
// Nothing of it is ever sent to the server except the current chat's messages, inside the
// chat request itself.
const CHATS = "cllm.chats.v1";
const MAX_CHATS = 200;

function read(key, fallback) {
  try {
    const raw = localStorage.getItem(key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

function write(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // storage full or disabled: the chat still works, it is just not kept
  }
}

export function loadChats() {
  const chats = read(CHATS, []);
  return Array.isArray(chats) ? chats.filter((c) => c && typeof c.id === "string") : [];
}

export function saveChat(chat) {
  const kept = {
    id: chat.id,
    title: chat.title,
    created: chat.created,
    updated: Date.now(),
    // Marked in the history as long as any message of it went unprotected.
    unprotected: Boolean(chat.unprotected) || chat.messages.some((m) => m.unprotected),
    messages: chat.messages.map(({ role, content, status, signature, unprotected, error }) => ({
      role,
      content,
      status: status === "streaming" ? "stopped" : status,
      signature,
      unprotected,
      error,
    })),
  };
  const others = loadChats().filter((c) => c.id !== chat.id);
  write(CHATS, [kept, ...others].slice(0, MAX_CHATS));
}

export function deleteChat(id) {
  write(
    CHATS,
    loadChats().filter((c) => c.id !== id),
  );
}

export function clearChats() {
  localStorage.removeItem(CHATS);
}

export const settings = {
  get verifier() {
    return localStorage.getItem("cllm.verifier");
  },
  set verifier(url) {
    if (url) localStorage.setItem("cllm.verifier", url);
    else localStorage.removeItem("cllm.verifier");
  },
  // The key of the verifier the user chose ({url, key: RFC 7638 thumbprint}), remembered on
  // first use and re-confirmed by the user when it changes.
  get verifierPin() {
    const pin = read("cllm.verifierPin", null);
    return pin && typeof pin.url === "string" && typeof pin.key === "string" ? pin : null;
  },
  set verifierPin(pin) {
    if (pin) write("cllm.verifierPin", { url: pin.url, key: pin.key });
    else localStorage.removeItem("cllm.verifierPin");
  },
  get maxTokens() {
    const value = Number.parseInt(localStorage.getItem("cllm.maxTokens") ?? "", 10);
    return Number.isInteger(value) && value > 0 ? Math.min(value, 32768) : 1024;
  },
  set maxTokens(value) {
    localStorage.setItem("cllm.maxTokens", String(value));
  },
  get theme() {
    return localStorage.getItem("cllm.theme");
  },
  set theme(value) {
    localStorage.setItem("cllm.theme", value);
  },
  get model() {
    return localStorage.getItem("cllm.model");
  },
  set model(value) {
    localStorage.setItem("cllm.model", value);
  },
  // The API key (for servers started with --api-key) only lives as long as the tab.
  get apiKey() {
    return sessionStorage.getItem("cllm.apiKey") ?? "";
  },
  set apiKey(value) {
    if (value) sessionStorage.setItem("cllm.apiKey", value);
    else sessionStorage.removeItem("cllm.apiKey");
  },
};
