// The UI's reading of token claims against ui/src/claims.schema.json, generated from the Python
// model (cllm.appraisal.TokenClaims; tests/appraisal/test_claims_schema.py keeps it current):
// the shared example claims validate, every claim the UI's code reads is declared there, and
// the status values the UI knows are the schema's.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { describe, it } from "node:test";

import { STATUSES } from "../src/permit.js";

const schema = JSON.parse(readFileSync(new URL("../src/claims.schema.json", import.meta.url), "utf8"));
const vectors = JSON.parse(
  readFileSync(new URL("../../tests/appraisal/permit_vectors.json", import.meta.url), "utf8"),
);

function resolve(node) {
  return node && node.$ref ? schema.$defs[node.$ref.split("/").pop()] : node;
}

const TYPES = {
  string: (v) => typeof v === "string",
  integer: (v) => Number.isInteger(v),
  number: (v) => typeof v === "number",
  boolean: (v) => typeof v === "boolean",
  null: (v) => v === null,
  object: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
  array: (v) => Array.isArray(v),
};

/** Errors of `value` against `node`: the subset of JSON Schema that pydantic writes. */
function validate(value, node, path = "claims") {
  node = resolve(node);
  if (node.anyOf) {
    const tries = node.anyOf.map((option) => validate(value, option, path));
    return tries.some((errors) => errors.length === 0) ? [] : [`${path}: matches no alternative`];
  }
  const errors = [];
  if (node.type && !TYPES[node.type](value)) return [`${path}: not ${node.type}`];
  if (node.enum && !node.enum.includes(value)) errors.push(`${path}: ${JSON.stringify(value)} not in enum`);
  if (node.const !== undefined && value !== node.const) errors.push(`${path}: not ${node.const}`);
  if (TYPES.object(value) && node.properties) {
    for (const name of node.required ?? []) if (!(name in value)) errors.push(`${path}.${name}: missing`);
    for (const [name, item] of Object.entries(value)) {
      if (node.properties[name]) errors.push(...validate(item, node.properties[name], `${path}.${name}`));
      else if (node.additionalProperties === false) errors.push(`${path}.${name}: not allowed`);
    }
  }
  if (Array.isArray(value) && node.items) {
    value.forEach((item, i) => errors.push(...validate(item, node.items, `${path}[${i}]`)));
  }
  return errors;
}

/** The schema node of a property path (["tcb", "status"]), or null when undeclared. */
function declared(names) {
  let node = schema;
  for (const name of names) {
    node = resolve(node);
    const objects = node.anyOf ? node.anyOf.map(resolve).filter((o) => o.properties) : [node];
    const next = objects.map((o) => o.properties?.[name]).find(Boolean);
    if (!next) return null;
    node = next;
  }
  return node;
}

function sources(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = new URL(name, dir);
    if (statSync(path).isDirectory()) return sources(new URL(`${name}/`, dir));
    return name.endsWith(".js") ? [{ name, text: readFileSync(path, "utf8") }] : [];
  });
}

// Fields of the proxy's /cllm/status document that the UI reads through the same `claims`
// object (trust.js: fromProxyStatus spreads that document); not token claims.
const PROXY_DOCUMENT = new Set(["checked_at"]);

describe("token claims as the UI reads them", () => {
  for (const example of vectors.claims) {
    it(`the example "${example.name}" validates`, () => {
      assert.deepEqual(validate(example.claims, schema), []);
    });
  }

  it("refuses claims of the wrong shape", () => {
    assert.notDeepEqual(validate({ status: "verified" }, schema), []);
    assert.notDeepEqual(validate({ simulated: "yes" }, schema), []);
    assert.notDeepEqual(validate({ gpus: [{ index: 0, status: "fine", simulated: false }] }, schema), []);
    assert.notDeepEqual(validate({ upstream: { scope: "elsewhere" } }, schema), []);
  });

  it("reads only claims the schema declares", () => {
    const read = new Set();
    for (const { text } of sources(new URL("../src/", import.meta.url))) {
      for (const match of text.matchAll(/\bclaims\??\.([a-z_][a-z_0-9]*)(?:\??\.([a-z_][a-z_0-9]*))?/g)) {
        read.add(match[2] ? `${match[1]}.${match[2]}` : match[1]);
      }
    }
    assert.ok(read.has("tcb.status") && read.has("status") && read.has("td"), [...read].join(", "));
    const undeclared = [...read].filter((path) => !PROXY_DOCUMENT.has(path) && !declared(path.split(".")));
    assert.deepEqual(undeclared, []);
  });

  it("knows exactly the schema's statuses", () => {
    assert.deepEqual([...resolve(declared(["status"])).enum].sort(), [...STATUSES].sort());
  });
});
