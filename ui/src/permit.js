// May the page use the keys a verdict names? The one rule of the Python side
// (cllm.appraisal.permits), checked against the same vectors (tests/appraisal/permit_vectors.json)
// by ui/test/permit.test.js. In order, the first that applies refuses: the verdict expired, its
// status is unknown or contraindicated, it names no keys, it is a warning that is not allowed.
export const STATUSES = Object.freeze(["affirming", "warning", "contraindicated"]);

export function permits({ status, hasKeys, allowWarning = true, expired = false }) {
  if (expired) return { permitted: false, code: "verdict_expired", message: "the verdict has expired and must be renewed" };
  if (typeof status !== "string" || !STATUSES.includes(status)) {
    return { permitted: false, code: "attestation_failed", message: `unknown status ${JSON.stringify(status ?? null)}` };
  }
  if (status === "contraindicated") return { permitted: false, code: "attestation_failed", message: "the server did not verify" };
  if (!hasKeys) return { permitted: false, code: "attestation_failed", message: "the verdict names no attested keys" };
  if (status === "warning" && !allowWarning) {
    return {
      permitted: false,
      code: "attestation_warning",
      message: "the server verified only with warnings and warnings are not allowed",
    };
  }
  return { permitted: true, code: null, message: "" };
}
