// permit.js against the Python side's rule (cllm.appraisal.permits): the shared vectors in
// tests/appraisal/permit_vectors.json, which tests/appraisal/test_permits.py checks too.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { permits } from "../src/permit.js";

const vectors = JSON.parse(
  readFileSync(new URL("../../tests/appraisal/permit_vectors.json", import.meta.url), "utf8"),
);

describe("may the page use a verdict's keys", () => {
  for (const c of vectors.cases) {
    it(c.name, () => {
      const permit = permits({
        status: c.status,
        hasKeys: c.has_keys,
        allowWarning: c.allow_warning,
        expired: c.expired,
      });
      assert.equal(permit.permitted, c.permitted);
      assert.equal(permit.code, c.code);
    });
  }

  it("is the rule the composer follows", () => {
    const main = readFileSync(new URL("../src/main.js", import.meta.url), "utf8");
    const body = main.slice(main.indexOf("function sendBlockReason()"), main.indexOf("function updateComposer()"));
    assert.match(body, /permits\(\{ status: a\.claims\?\.status, hasKeys: Boolean\(a\.keys\)/);
    assert.match(body, /if \(!permit\.permitted\) return/);
  });
});
