// gpus.js: the badge is green only when every GPU of the verdict is verified hardware (a
// simulated GPU is amber like a simulated TD; unattested and rejected GPUs too), entries that do
// not say so plainly never count as verified, and the details list every field as text.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { capForGpus, gpuEntries, gpuProblem, gpuRows, gpuSummary, renderGpus } from "../src/gpus.js";

// Built to the `gpus` claim contract (docs/client.md "GPUs"), like tests/gpu_claims.py.
const gpu = (index = 0, fields = {}) => ({
  index,
  ueid: "478176379286082186618948445787393647364802107249",
  hwmodel: "GH100 A01 GSP BROM",
  arch: "hopper",
  driver_version: "550.90.07",
  vbios_version: "96.00.CF.00.01",
  mode: "cc",
  status: "verified",
  measurements: { result: "matched", mismatched_indices: [] },
  rim_ids: ["NV_GPU_DRIVER_GH100_550.90.07", "NV_GPU_VBIOS_1010_0205_862_9600CF0001"],
  ocsp: "good",
  simulated: false,
  error: null,
  ...fields,
});
const green = (gpus) => ({ state: "green", label: "Verified TDX", reason: "Genuine Intel TDX.", claims: { status: "affirming", gpus } });

describe("the badge and the GPUs", () => {
  it("stays green when every GPU is verified hardware, or there are none", () => {
    for (const gpus of [[gpu(0), gpu(1)], []]) {
      const result = green(gpus);
      assert.equal(capForGpus(result), result);
    }
    const noClaim = { state: "green", label: "Verified TDX", reason: "x", claims: { status: "affirming" } };
    assert.equal(capForGpus(noClaim).state, "green"); // the policy did not ask about GPUs
  });

  it("turns a simulated GPU amber, like a simulated TD", () => {
    const result = capForGpus(green([gpu(0), gpu(1, { simulated: true })]));
    assert.equal(result.state, "amber");
    assert.equal(result.label, "Simulated GPU");
    assert.match(result.reason, /^Genuine Intel TDX\. GPUs: GPU 1: simulated, not NVIDIA hardware evidence/);
  });

  it("turns unattested and rejected GPUs amber, naming them", () => {
    const unattested = capForGpus(green([gpu(0, { status: "unattested" })]));
    assert.deepEqual([unattested.state, unattested.label], ["amber", "GPU not attested"]);
    const rejected = capForGpus(green([gpu(0), gpu(3, { status: "rejected" })]));
    assert.deepEqual([rejected.state, rejected.label], ["amber", "GPU rejected"]);
    assert.match(rejected.reason, /GPU 3: GPU evidence rejected/);
  });

  it("never counts an entry as verified hardware unless it says so plainly", () => {
    const { simulated, ...noFlag } = gpu(1);
    assert.equal(simulated, false);
    for (const odd of [gpu(0, { status: "Verified" }), noFlag, gpu(2, { simulated: "false" }), "GPU", null]) {
      assert.equal(capForGpus(green([odd])).state, "amber", JSON.stringify(odd));
    }
    assert.equal(capForGpus(green({ 0: gpu(0) })).label, "GPU claims malformed");
    assert.equal(gpuEntries({ gpus: [null] })[0].status, "rejected");
  });

  it("keeps an amber verdict's label and a red one as it is", () => {
    const amber = { state: "amber", label: "Simulated TEE", reason: "Simulated TEE.", claims: { gpus: [gpu(0, { simulated: true })] } };
    const capped = capForGpus(amber);
    assert.equal(capped.label, "Simulated TEE");
    assert.match(capped.reason, /GPU 0: simulated/);
    const red = { state: "red", label: "Not verified", reason: "No.", claims: { gpus: [gpu(0, { simulated: true })] } };
    assert.equal(capForGpus(red), red);
    assert.equal(gpuProblem({ gpus: [gpu(0)] }), null);
  });
});

// A stand-in for the DOM: nodes whose only way to hold a string is `text` (textContent).
const el = (tag, { text, className, attrs } = {}, children = []) => {
  const node = { tag, text: text ?? null, className, attrs: attrs ?? {}, children: [...children] };
  node.append = (...more) => node.children.push(...more);
  return node;
};
const row = (term, value, { mono = false } = {}) => [el("dt", { text: term }), el("dd", { text: value ?? "—", className: mono ? "mono" : "" })];
const texts = (nodes) => nodes.flatMap((n) => [n.text, ...texts(n.children)]).filter((t) => t !== null);

describe("the details panel", () => {
  it("lists each GPU with every field", () => {
    const nodes = renderGpus(
      {
        gpus: [
          gpu(0),
          gpu(1, {
            status: "rejected",
            measurements: { result: "mismatched", mismatched_indices: [9, 35] },
            error: { code: "gpu_measurement_mismatch", message: "differ at 9, 35" },
          }),
        ],
      },
      { el, row },
    );
    const all = texts(nodes);
    for (const expected of [
      "GPUs (2)",
      "GPU 0",
      "Verified",
      "hopper",
      "GH100 A01 GSP BROM",
      "478176379286082186618948445787393647364802107249",
      "550.90.07",
      "96.00.CF.00.01",
      "cc",
      "Matched the RIMs",
      "NV_GPU_DRIVER_GH100_550.90.07, NV_GPU_VBIOS_1010_0205_862_9600CF0001",
      "good",
      "GPU 1",
      "Rejected",
      "Mismatched at indices 9, 35",
      "gpu_measurement_mismatch: differ at 9, 35",
    ]) {
      assert.ok(all.includes(expected), expected);
    }
    const items = nodes[1].children;
    assert.deepEqual(items.map((i) => i.attrs["data-state"]), ["ok", "bad"]);
  });

  it("says so when there is no GPU evidence, or the verifier did not say", () => {
    assert.deepEqual(texts(renderGpus({ gpus: [] }, { el, row })), ["GPUs", "No GPU evidence."]);
    assert.deepEqual(texts(renderGpus({ status: "affirming" }, { el, row })), ["GPUs", "Not reported by the verifier."]);
    assert.deepEqual(renderGpus(null, { el, row }), []);
    assert.equal(gpuSummary({ gpus: [] }), "none (no GPU evidence)");
    assert.equal(gpuSummary({}), "not reported by the verifier");
    assert.equal(gpuSummary({ gpus: [gpu(0), gpu(1)] }), "2: all verified NVIDIA hardware.");
    assert.match(gpuSummary({ gpus: [gpu(0, { status: "unattested" })] }), /^1: GPU 0: present but not attested/);
  });

  it("shows a simulated GPU as such, and server-chosen strings only as text", () => {
    const hostile = '<img src=x onerror="alert(1)">';
    const rows = gpuRows(gpuEntries({ gpus: [gpu(0, { simulated: true, hwmodel: hostile })] })[0]);
    assert.equal(rows[0][1], "Verified (simulated GPU: not hardware evidence)");
    const nodes = renderGpus({ gpus: [gpu(0, { hwmodel: hostile })] }, { el, row });
    assert.ok(texts(nodes).includes(hostile)); // carried as text; the page sets textContent
  });
});
