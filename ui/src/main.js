// The cllm chat page: attestation badge (checked on every new chat), fail-closed sending,
// prompts sealed in this browser to the attested key, answers opened and their signatures
// checked here. Token and evidence values are only ever set as text (textContent).
import { capForGpus, gpuSummary, renderGpus } from "./gpus.js";
import { renderMarkdown } from "./markdown.js";
import { permits } from "./permit.js";
import { attest, normaliseVerifier } from "./protocol/attest.js";
import { pinning, upstreamText } from "./protocol/reference.js";
import { streamChat } from "./protocol/chat.js";
import { clearChats, deleteChat, loadChats, saveChat, settings } from "./store.js";
import {
  capServerChosen,
  fromProxyStatus,
  isLoopbackHost,
  localExpiry,
  proxyStatus,
  secondsLeft,
} from "./trust.js";

const $ = (id) => document.getElementById(id);
const ui = {
  app: $("app"),
  sidebar: $("sidebar"),
  scrim: $("scrim"),
  toggleSidebar: $("toggle-sidebar"),
  newChat: $("new-chat"),
  history: $("history"),
  clearHistory: $("clear-history"),
  model: $("model"),
  badgeWrap: $("badge-wrap"),
  badge: $("badge"),
  badgeLabel: $("badge-label"),
  details: $("details"),
  theme: $("theme"),
  settingsButton: $("settings-button"),
  settings: $("settings"),
  settingsForm: $("settings-form"),
  verifierUrl: $("verifier-url"),
  verifierReset: $("verifier-reset"),
  maxTokens: $("max-tokens"),
  apiKey: $("api-key"),
  banner: $("unprotected-banner"),
  messages: $("messages"),
  empty: $("empty"),
  composer: $("composer"),
  blocked: $("blocked"),
  blockedText: $("blocked-text"),
  continueUnprotected: $("continue-unprotected"),
  prompt: $("prompt"),
  send: $("send"),
  stop: $("stop"),
  trustNotice: $("trust-notice"),
};

const state = {
  server: null, // /healthz
  chat: null, // {id, title, created, unprotected, messages: [...]}
  attestation: { state: "pending", label: "Checking…", reason: "Checking the server…" },
  check: 0, // id of the latest attestation run: older results are dropped
  streaming: null, // AbortController of the answer in progress
  detailsPinned: false,
  mode: "server", // "proxy" when served by the user's own cllm proxy (see trust.js)
  expiryTimer: 0,
};

// --- small DOM helpers: text only -------------------------------------------------------------

function el(tag, { text, className, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs ?? {})) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function utc(date) {
  return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

function timeOrDash(seconds) {
  return Number.isFinite(seconds) ? utc(new Date(seconds * 1000)) : "—";
}

// --- theme ------------------------------------------------------------------------------------

function currentTheme() {
  return (
    settings.theme ?? (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light")
  );
}

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  const other = theme === "dark" ? "light" : "dark";
  ui.theme.setAttribute("aria-label", `Switch to ${other} theme`);
  ui.theme.title = `Switch to ${other} theme`;
}

// --- attestation badge and details ------------------------------------------------------------

const COMPONENT_LABELS = {
  "cllm.package": "cllm package",
  "cllm.engine": "Engine",
  "cllm.model": "Model",
  "cllm.ui": "UI",
  "cllm.config": "Configuration",
  "cllm.start": "Start marker",
};

function row(term, value, { mono = false } = {}) {
  return [el("dt", { text: term }), el("dd", { text: value ?? "—", className: mono ? "mono" : "" })];
}

function renderDetails(result) {
  const claims = result.claims;
  const parts = [];
  parts.push(
    el("h2", { text: `Attestation: ${result.label}` }),
    el("p", { text: result.reason, className: "reason" }),
  );
  const summary = el("dl", { className: "kv" });
  const tee = claims?.tee ?? result.evidenceTee ?? "—";
  const simulated = claims ? (claims.simulated === false ? "no (hardware)" : "yes") : "—";
  summary.append(
    ...row("TEE", tee),
    ...row("Simulated", simulated),
    ...row("TCB status", claims?.tcb?.status ?? "—"),
    ...row(
      "Advisories",
      Array.isArray(claims?.tcb?.advisory_ids) && claims.tcb.advisory_ids.length
        ? claims.tcb.advisory_ids.join(", ")
        : claims?.tcb
          ? "none"
          : "—",
    ),
    ...row("Collateral expires", timeOrDash(claims?.tcb?.collateral_expires)),
    ...row("Policy", claims?.policy ? `${claims.policy.id} (sha256 ${claims.policy.sha256})` : "—"),
    ...row("Software", claims ? pinning(claims).text : "—"),
    ...row("Prompts", claims ? upstreamText(claims) : "—"),
    ...row("GPUs", gpuSummary(claims)),
    ...row("Verifier", result.verifier || "—", { mono: true }),
    ...row("Verifier key", result.verifierKey || "—", { mono: true }),
    ...row("Checked at", result.checkedAt ? utc(new Date(result.checkedAt)) : "—"),
    ...row("Token valid until", timeOrDash(claims?.exp)),
  );
  parts.push(summary);
  if (result.notice) {
    parts.splice(2, 0, el("p", { text: result.notice, className: "reason notice" }));
  }
  if (result.keyChanged && result.verifierKey) {
    const confirm = el("button", {
      text: `Trust the new key ${result.verifierKey}`,
      attrs: { type: "button", "data-testid": "confirm-verifier-key" },
    });
    confirm.addEventListener("click", () => {
      settings.verifierPin = { url: verifierUrl(), key: result.verifierKey };
      runAttestation();
    });
    parts.push(el("div", { className: "row" }, [confirm]));
  }

  const reasons = Array.isArray(claims?.reasons) ? claims.reasons : [];
  if (reasons.length) {
    parts.push(el("h3", { text: "Reasons" }));
    parts.push(
      el(
        "ul",
        { className: "reasons" },
        reasons.map((r) => el("li", { text: r && typeof r === "object" ? `${r.code}: ${r.message}` : r })),
      ),
    );
  }

  if (claims?.td && typeof claims.td === "object") {
    parts.push(el("h3", { text: "Trust domain" }));
    const td = el("dl", { className: "kv" });
    for (const name of [
      "mrtd",
      "rtmr0",
      "rtmr1",
      "rtmr2",
      "rtmr3",
      "mr_seam",
      "td_attributes",
      "xfam",
      "mrservicetd",
      "mrconfigid",
      "mrowner",
      "mrownerconfig",
    ]) {
      td.append(...row(name.toUpperCase().replace("_", " "), claims.td[name], { mono: true }));
    }
    td.append(...row("Debug", claims.td.debug === false ? "off" : String(claims.td.debug)));
    parts.push(td);
  }

  const components = Array.isArray(claims?.components) ? claims.components : [];
  if (components.length) {
    parts.push(el("h3", { text: "Measured components" }));
    const list = el("ul", { className: "components" });
    for (const c of components) {
      if (!c || typeof c !== "object") continue;
      const kind = COMPONENT_LABELS[c.type] ?? String(c.type);
      list.append(
        el("li", {}, [
          el("span", { text: kind, className: "component-kind" }),
          el("span", { text: c.name, className: "component-name" }),
          el("span", { text: `sha384:${c.digest}`, className: "mono digest" }),
        ]),
      );
    }
    parts.push(list);
  }

  parts.push(...renderGpus(claims, { el, row }));

  const recheck = el("button", { text: "Check again", attrs: { type: "button" } });
  recheck.addEventListener("click", () => runAttestation());
  parts.push(el("div", { className: "row" }, [recheck]));
  ui.details.replaceChildren(...parts);
}

function showDetails(show, { pin } = {}) {
  if (pin !== undefined) state.detailsPinned = pin;
  ui.details.hidden = !show;
  ui.badge.setAttribute("aria-expanded", String(show));
}

function setAttestation(result) {
  result.expiresLocal = localExpiry(result);
  state.attestation = result;
  // Once the server verifies again, the chat is protected again (never the other way).
  if (result.keys && state.chat) state.chat.unprotected = false;
  ui.badge.dataset.state = result.state;
  ui.badgeLabel.textContent = result.label;
  ui.badge.title = result.reason;
  ui.trustNotice.hidden = !result.notice;
  ui.trustNotice.textContent = result.notice ?? "";
  renderDetails(result);
  updateComposer();
  scheduleRecheck(result);
}

// A verdict vouches for the keys until its token expires: then the page checks again, and
// sending waits for that check (as for every other check).
function scheduleRecheck(result) {
  clearTimeout(state.expiryTimer);
  const left = secondsLeft(result);
  if (result.state === "pending" || !Number.isFinite(left)) return;
  state.expiryTimer = setTimeout(() => runAttestation(), Math.max(0, left) * 1000);
}

async function runAttestation() {
  const check = ++state.check;
  setAttestation({
    state: "pending",
    label: "Checking…",
    reason: "Checking the server's attestation before anything is sent…",
    verifier: verifierUrl(),
    claims: null,
  });
  const result = capForGpus(await checkServer(check)); // green only with every GPU verified hardware
  if (check === state.check) setAttestation(result);
  if (result.temporary) {
    setTimeout(() => {
      if (check === state.check) runAttestation();
    }, 10_000);
  }
}

async function checkServer(check) {
  if (state.mode === "proxy") {
    const doc = await proxyStatus({ refresh: check > 1 });
    if (!doc) return { state: "red", label: "Not verified", reason: "Your cllm proxy did not answer.", claims: null };
    return fromProxyStatus(doc);
  }
  const url = verifierUrl();
  if (settings.verifier === null) {
    const result = await attest({ verifier: url });
    return url ? capServerChosen(result) : result; // no verifier at all: red, said as such
  }
  const remembered = settings.verifierPin;
  const pin = remembered && remembered.url === url ? remembered.key : null;
  const result = await attest({ verifier: url, pin });
  if (!pin && result.keys && result.verifierKey) {
    // First use of the verifier the user chose: remember its key (shown in the details);
    // a later change of key blocks sending until the user confirms the new one.
    settings.verifierPin = { url, key: result.verifierKey };
  }
  return { ...result, verifierSource: "user" };
}

function verifierUrl() {
  return normaliseVerifier(settings.verifier ?? state.server?.verifier ?? "");
}

// --- composer gating (fail closed) ------------------------------------------------------------

function sendBlockReason() {
  if (state.streaming) return { text: "An answer is in progress.", quiet: true };
  if (!state.chat) return { text: "Starting…" };
  if (state.chat.unprotected) return null;
  const a = state.attestation;
  if (a.state === "pending") return { text: "Sending is paused until the attestation check ends." };
  // The one rule of every client (permit.js = cllm.appraisal.permits); a red badge never sends.
  const permit = permits({ status: a.claims?.status, hasKeys: Boolean(a.keys), expired: secondsLeft(a) <= 0 });
  if (permit.code === "verdict_expired") return { text: "Sending is paused: the verdict expired and is being renewed." };
  // Through cllm proxy nothing goes to an unverified server at all: no offer to try.
  // Busy (429/503) is no verdict: never an offer to go unprotected for it either.
  if (a.state === "red") return { text: `Sending is blocked: ${a.reason}`, offer: state.mode !== "proxy" && !a.temporary };
  if (!a.keys) return { text: "Sending is blocked: no attested keys." };
  if (!permit.permitted) return { text: `Sending is blocked: ${permit.message} (${permit.code}).` };
  return null;
}

function updateComposer() {
  const block = sendBlockReason();
  ui.send.disabled = block !== null;
  ui.send.title = block ? block.text : "Send (Enter)";
  ui.stop.disabled = !state.streaming;
  const showBlock = block !== null && !block.quiet;
  ui.blocked.hidden = !showBlock;
  ui.blockedText.textContent = showBlock ? block.text : "";
  ui.continueUnprotected.hidden = !(block && block.offer);
  ui.banner.hidden = !state.chat?.unprotected;
  ui.composer.classList.toggle("is-unprotected", Boolean(state.chat?.unprotected));
}

// --- messages ---------------------------------------------------------------------------------

function signatureText(message) {
  if (message.status === "error") return message.error ?? "Error";
  const parts = [];
  if (message.status === "stopped") parts.push("Stopped: incomplete and unsigned");
  const sig = message.signature ?? {};
  if (message.unprotected) parts.push("Unprotected: sent in plain text, not verified");
  else if (sig.state === "verified") parts.push("✓ Signed by the attested server");
  else if (sig.state === "invalid") parts.push(`✗ Signature invalid (${sig.code}): do not trust`);
  else if (message.status === "done") parts.push("Not verified");
  return parts.join(" · ");
}

function messageNode(message) {
  const role = message.role === "user" ? "user" : "assistant";
  const article = el("article", {
    className: `message ${role}`,
    attrs: { "data-testid": `message-${role}` },
  });
  const content = el("div", { className: "content" });
  const meta = el("div", { className: "meta" });
  article.append(content, meta);
  updateMessageNode(article, message);
  return article;
}

function updateMessageNode(article, message) {
  const [content, meta] = article.children;
  if (message.role === "user") {
    content.textContent = message.content;
  } else {
    content.replaceChildren(renderMarkdown(message.content));
    article.dataset.status = message.status ?? "done";
    article.dataset.signature = message.signature?.state ?? "unverified";
    if (message.unprotected) article.dataset.unprotected = "true";
    meta.textContent = message.status === "streaming" ? "…" : signatureText(message);
    meta.classList.toggle("bad", message.status === "error" || message.signature?.state === "invalid");
  }
}

function renderMessages() {
  const nodes = state.chat.messages.map(messageNode);
  ui.messages.replaceChildren(...(nodes.length ? nodes : [ui.empty]));
}

function scrollToEnd() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

// --- history ----------------------------------------------------------------------------------

function renderHistory() {
  const items = loadChats().map((chat) => {
    const open = el("button", {
      text: chat.title || "New chat",
      className: "history-item",
      attrs: { type: "button", title: new Date(chat.updated ?? chat.created).toLocaleString() },
    });
    if (state.chat && chat.id === state.chat.id) open.setAttribute("aria-current", "true");
    if (chat.unprotected) open.append(el("span", { text: " (unprotected)", className: "muted" }));
    open.addEventListener("click", () => openChat(chat));
    const remove = el("button", {
      text: "✕",
      className: "icon small",
      attrs: { type: "button", "aria-label": `Delete chat ${chat.title || ""}` },
    });
    remove.addEventListener("click", () => {
      deleteChat(chat.id);
      if (state.chat?.id === chat.id) startNewChat();
      else renderHistory();
    });
    return el("li", {}, [open, remove]);
  });
  ui.history.replaceChildren(...items);
}

function closeSidebar() {
  ui.app.classList.remove("sidebar-open");
  ui.scrim.hidden = true;
  ui.toggleSidebar.setAttribute("aria-expanded", "false");
}

function stopStreaming() {
  state.streaming?.abort();
}

function startNewChat() {
  stopStreaming();
  state.chat = { id: newId(), title: "", created: Date.now(), unprotected: false, messages: [] };
  renderMessages();
  renderHistory();
  closeSidebar();
  runAttestation();
  ui.prompt.focus();
}

function openChat(saved) {
  stopStreaming();
  state.chat = {
    ...saved,
    // "Continue unprotected" was consent for that moment: a reopened chat asks again.
    unprotected: false,
    messages: saved.messages.map((m) => ({ ...m, unprotected: m.unprotected ?? saved.unprotected })),
  };
  renderMessages();
  renderHistory();
  closeSidebar();
  scrollToEnd();
  runAttestation(); // a reopened chat is checked afresh before anything more is sent
  ui.prompt.focus();
}

// --- sending ----------------------------------------------------------------------------------

async function send() {
  const text = ui.prompt.value.trim();
  if (!state.chat?.unprotected && secondsLeft(state.attestation) <= 0) {
    runAttestation(); // expired (a sleeping laptop's timer may not have fired): check first
    return;
  }
  if (!text || sendBlockReason() !== null) return;
  const chat = state.chat;
  const unprotected = Boolean(chat.unprotected);
  const keys = unprotected ? null : state.attestation.keys;
  if (!unprotected && !keys) return;
  ui.prompt.value = "";
  const user = { role: "user", content: text };
  const history = chat.messages
    .filter((m) => (m.role === "user" || m.role === "assistant") && m.content)
    .map((m) => ({ role: m.role, content: m.content }));
  chat.messages.push(user);
  if (!chat.title) chat.title = text.slice(0, 60);
  const answer = { role: "assistant", content: "", status: "streaming", unprotected };
  chat.messages.push(answer);
  if (chat.messages.length === 2) ui.messages.replaceChildren();
  ui.messages.append(messageNode(user));
  const node = messageNode(answer);
  ui.messages.append(node);
  scrollToEnd();
  saveChat(chat);
  renderHistory();

  const controller = new AbortController();
  state.streaming = controller;
  updateComposer();
  const request = {
    model: ui.model.value,
    messages: [...history, { role: "user", content: text }],
    stream: true,
    max_tokens: settings.maxTokens,
  };
  const headers = settings.apiKey ? { Authorization: `Bearer ${settings.apiKey}` } : {};
  let frame = 0;
  const result = await streamChat({
    request,
    keys,
    headers,
    signal: controller.signal,
    onDelta: (_, all) => {
      answer.content = all;
      if (!frame) {
        frame = requestAnimationFrame(() => {
          frame = 0;
          updateMessageNode(node, answer);
          scrollToEnd();
        });
      }
    },
  }).catch((error) => ({ text: answer.content, error: `Could not send: ${error.message}` }));
  if (frame) cancelAnimationFrame(frame);
  answer.content = result.text ?? answer.content;
  answer.signature = result.signature;
  if (result.aborted) answer.status = "stopped";
  else if (result.error) {
    answer.status = "error";
    answer.error = result.error;
  } else answer.status = "done";
  if (state.streaming === controller) state.streaming = null;
  updateMessageNode(node, answer);
  if (state.chat === chat) scrollToEnd();
  saveChat(chat);
  renderHistory();
  updateComposer();
  if (state.chat === chat) ui.prompt.focus();
}

// --- models and settings ----------------------------------------------------------------------

async function loadModels() {
  const headers = settings.apiKey ? { Authorization: `Bearer ${settings.apiKey}` } : {};
  let ids = [];
  try {
    const response = await fetch("/v1/models", { headers, cache: "no-store" });
    if (response.ok) {
      const doc = await response.json();
      ids = (doc.data ?? []).map((m) => m.id).filter((id) => typeof id === "string");
    }
  } catch {
    // shown below
  }
  if (!ids.length && state.server?.model) ids = [state.server.model];
  ui.model.replaceChildren(...ids.map((id) => el("option", { text: id, attrs: { value: id } })));
  if (ids.includes(settings.model)) ui.model.value = settings.model;
}

function fillSettings() {
  ui.verifierUrl.value = verifierUrl();
  ui.verifierUrl.disabled = state.mode === "proxy";
  ui.maxTokens.value = String(settings.maxTokens);
  ui.apiKey.value = settings.apiKey;
}

function toggleSettings(show = ui.settings.hidden) {
  ui.settings.hidden = !show;
  ui.settingsButton.setAttribute("aria-expanded", String(show));
  if (show) {
    fillSettings();
    ui.verifierUrl.focus();
  }
}

// --- wiring -----------------------------------------------------------------------------------

function wire() {
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  ui.stop.addEventListener("click", stopStreaming);
  ui.newChat.addEventListener("click", startNewChat);
  ui.continueUnprotected.addEventListener("click", () => {
    if (!state.chat || state.attestation.state !== "red" || state.attestation.temporary) return;
    state.chat.unprotected = true;
    updateComposer();
    ui.prompt.focus();
  });
  ui.clearHistory.addEventListener("click", () => {
    clearChats();
    startNewChat();
  });
  ui.model.addEventListener("change", () => {
    settings.model = ui.model.value;
  });

  ui.badge.addEventListener("click", () => {
    const pinned = !(state.detailsPinned && !ui.details.hidden);
    showDetails(pinned, { pin: pinned });
  });
  // Hover opens the details too; a short grace period lets the pointer cross to the panel.
  let hideTimer = 0;
  ui.badgeWrap.addEventListener("mouseenter", () => {
    clearTimeout(hideTimer);
    showDetails(true);
  });
  ui.badgeWrap.addEventListener("mouseleave", () => {
    hideTimer = setTimeout(() => {
      if (!state.detailsPinned) showDetails(false);
    }, 250);
  });
  document.addEventListener("click", (event) => {
    if (state.detailsPinned && !ui.badgeWrap.contains(event.target)) {
      showDetails(false, { pin: false });
    }
  });

  ui.theme.addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    settings.theme = next;
    applyTheme(next);
  });
  ui.settingsButton.addEventListener("click", () => toggleSettings());
  ui.settingsForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const url = normaliseVerifier(ui.verifierUrl.value);
    if (state.mode !== "proxy") {
      settings.verifier = url === normaliseVerifier(state.server?.verifier ?? "") ? null : url;
    }
    const max = Number.parseInt(ui.maxTokens.value, 10);
    if (Number.isInteger(max) && max > 0) settings.maxTokens = max;
    settings.apiKey = ui.apiKey.value;
    toggleSettings(false);
    loadModels();
    runAttestation();
  });
  ui.verifierReset.addEventListener("click", () => {
    settings.verifier = null;
    fillSettings();
  });

  ui.toggleSidebar.addEventListener("click", () => {
    const open = !ui.app.classList.contains("sidebar-open");
    ui.app.classList.toggle("sidebar-open", open);
    ui.scrim.hidden = !open;
    ui.toggleSidebar.setAttribute("aria-expanded", String(open));
    if (open) ui.newChat.focus();
  });
  ui.scrim.addEventListener("click", closeSidebar);

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      if (state.streaming) stopStreaming();
      else if (!ui.details.hidden) {
        showDetails(false, { pin: false });
        ui.badge.focus();
      } else if (!ui.settings.hidden) toggleSettings(false);
      else closeSidebar();
    } else if (event.altKey && (event.key === "n" || event.key === "N")) {
      event.preventDefault();
      startNewChat();
    }
  });
}

async function main() {
  applyTheme(currentTheme());
  wire();
  // Served by the user's own cllm proxy: its verdict, from the user's configuration. A page
  // from anywhere else never asks /cllm/status (a server could answer it with anything).
  if (isLoopbackHost(location.hostname) && (await proxyStatus())) {
    state.mode = "proxy";
    state.server = null;
  } else {
    try {
      const response = await fetch("/healthz", { cache: "no-store" });
      state.server = await response.json();
    } catch {
      state.server = null;
    }
  }
  await loadModels();
  startNewChat();
}

main();
