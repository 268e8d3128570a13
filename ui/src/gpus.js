// The verdict's GPUs (the token's `gpus` claim, docs/client.md "GPUs"): what the badge may say
// about them and what the details panel lists. Every value is chosen by the server or the
// verifier: it is only ever set as text (the `el` factory given by main.js uses textContent).
//
// The badge is green only when the verdict is affirming and every GPU entry is verified
// hardware evidence: a simulated, unattested or rejected GPU makes a green verdict amber (a
// simulated GPU like a simulated TD). An entry that does not say plainly that it is verified
// hardware never counts as such: an unknown status reads as "rejected", and `simulated` as true
// unless it is exactly false.

const STATUSES = new Set(["verified", "rejected", "unattested"]);
const RESULTS = new Set(["matched", "mismatched", "not_appraised"]);

const text = (value) => (typeof value === "string" ? value : null);

/** The `gpus` claim as normalised entries; null when the claim is absent or not a list. */
export function gpuEntries(claims) {
  const gpus = claims && typeof claims === "object" ? claims.gpus : undefined;
  if (!Array.isArray(gpus)) return null;
  return gpus.map((raw, position) => {
    const doc = raw && typeof raw === "object" && !Array.isArray(raw) ? raw : {};
    const m = doc.measurements && typeof doc.measurements === "object" ? doc.measurements : {};
    const error = doc.error && typeof doc.error === "object" ? doc.error : null;
    return {
      index: Number.isInteger(doc.index) ? doc.index : position,
      status: STATUSES.has(doc.status) ? doc.status : "rejected",
      simulated: doc.simulated !== false,
      arch: text(doc.arch),
      hwmodel: text(doc.hwmodel),
      ueid: text(doc.ueid),
      driverVersion: text(doc.driver_version),
      vbiosVersion: text(doc.vbios_version),
      mode: text(doc.mode),
      measurements: RESULTS.has(m.result) ? m.result : "not_appraised",
      mismatched: Array.isArray(m.mismatched_indices) ? m.mismatched_indices.filter(Number.isInteger) : [],
      rimIds: Array.isArray(doc.rim_ids) ? doc.rim_ids.filter((r) => typeof r === "string" && r) : [],
      ocsp: text(doc.ocsp) ?? "not_checked",
      error: error ? `${String(error.code)}: ${String(error.message)}` : null,
    };
  });
}

/**
 * What keeps the GPUs from being verified hardware: `{ label, text }` for the badge, or null
 * when there is nothing to say (no GPU evidence, or every GPU verified hardware).
 */
export function gpuProblem(claims) {
  const entries = gpuEntries(claims);
  if (claims && typeof claims === "object" && "gpus" in claims && entries === null) {
    return { label: "GPU claims malformed", text: "The verdict's GPU list is malformed." };
  }
  if (!entries) return null;
  const simulated = entries.filter((g) => g.simulated);
  const unattested = entries.filter((g) => g.status === "unattested");
  const rejected = entries.filter((g) => g.status === "rejected");
  const parts = [];
  const which = (list) => list.map((g) => `GPU ${g.index}`).join(", ");
  if (simulated.length) parts.push(`${which(simulated)}: simulated, not NVIDIA hardware evidence (testing only)`);
  if (unattested.length) parts.push(`${which(unattested)}: present but not attested (no GPU evidence given)`);
  if (rejected.length) parts.push(`${which(rejected)}: GPU evidence rejected`);
  if (!parts.length) return null;
  const label = simulated.length ? "Simulated GPU" : rejected.length ? "GPU rejected" : "GPU not attested";
  return { label, text: `${parts.join("; ")}.` };
}

/**
 * The badge result with the GPUs taken into account: green only when every GPU is verified
 * hardware, otherwise amber with the GPU problem as its label; an amber verdict keeps its label
 * and gains the GPU problem in its reason; red stays red.
 */
export function capForGpus(result) {
  if (!result || (result.state !== "green" && result.state !== "amber")) return result;
  const problem = gpuProblem(result.claims);
  if (!problem) return result;
  const reason = `${result.reason} GPUs: ${problem.text}`;
  if (result.state === "green") return { ...result, state: "amber", label: problem.label, reason };
  return { ...result, reason };
}

/** One line for the details summary: how many GPUs, and which are not verified hardware. */
export function gpuSummary(claims) {
  if (!claims || typeof claims !== "object") return "—";
  const entries = gpuEntries(claims);
  if (entries === null) return "gpus" in claims ? "malformed" : "not reported by the verifier";
  if (!entries.length) return "none (no GPU evidence)";
  const problem = gpuProblem(claims);
  return `${entries.length}: ${problem ? problem.text : "all verified NVIDIA hardware."}`;
}

function measurementsText(gpu) {
  if (gpu.measurements === "mismatched") {
    return `Mismatched at indices ${gpu.mismatched.join(", ") || "(not named)"}`;
  }
  return gpu.measurements === "matched" ? "Matched the RIMs" : "Not appraised (no RIMs compared)";
}

const STATUS_TEXT = { verified: "Verified", rejected: "Rejected", unattested: "Not attested" };

/** The rows the details panel shows for one GPU: [term, value, {mono}] triples. */
export function gpuRows(gpu) {
  const rows = [
    ["Status", `${STATUS_TEXT[gpu.status]}${gpu.simulated ? " (simulated GPU: not hardware evidence)" : ""}`],
    ["Architecture", gpu.arch],
    ["Model", gpu.hwmodel],
    ["UEID", gpu.ueid, { mono: true }],
    ["Driver", gpu.driverVersion],
    ["VBIOS", gpu.vbiosVersion],
    ["Mode", gpu.mode],
    ["Measurements", measurementsText(gpu)],
    ["RIMs", gpu.rimIds.length ? gpu.rimIds.join(", ") : "none", { mono: true }],
    ["OCSP", gpu.ocsp],
  ];
  if (gpu.error) rows.push(["Error", gpu.error]);
  return rows;
}

/**
 * The GPU section of the details panel, built with main.js's text-only helpers: `el(tag,
 * {text, className, attrs}, children)` and `row(term, value, {mono})` (a dt/dd pair).
 */
export function renderGpus(claims, { el, row }) {
  if (!claims || typeof claims !== "object") return [];
  const entries = gpuEntries(claims);
  const heading = el("h3", { text: "GPUs" });
  if (entries === null) {
    const said = "gpus" in claims ? "The verdict's GPU list is malformed." : "Not reported by the verifier.";
    return [heading, el("p", { text: said, className: "muted", attrs: { "data-testid": "gpu-none" } })];
  }
  if (!entries.length) {
    return [heading, el("p", { text: "No GPU evidence.", className: "muted", attrs: { "data-testid": "gpu-none" } })];
  }
  const items = entries.map((gpu) => {
    const state = gpu.status === "verified" && !gpu.simulated ? "ok" : gpu.status === "rejected" ? "bad" : "warn";
    const list = el("dl", { className: "kv" });
    for (const [term, value, options] of gpuRows(gpu)) list.append(...row(term, value, options));
    return el("li", { className: `gpu gpu-${state}`, attrs: { "data-testid": "gpu", "data-state": state } }, [
      el("h4", { text: `GPU ${gpu.index}` }),
      list,
    ]);
  });
  return [
    el("h3", { text: `GPUs (${entries.length})` }),
    el("ul", { className: "gpus", attrs: { "data-testid": "gpu-list" } }, items),
  ];
}
