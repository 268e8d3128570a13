// trust.js: the verifier key thumbprint agrees with the Python side (cllm.token.jwk_thumbprint
// of the P-256 key with scalar 12345), a pin refuses any other key, a server-chosen verifier is
// never green, and only loopback names count as this machine.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { capServerChosen, isLoopbackHost, localExpiry, pinJwks, secondsLeft, thumbprint } from "../src/trust.js";

const JWK = {
  kty: "EC",
  crv: "P-256",
  x: "Ju_OvQ7p40pmkYfhizqRIrL3M5RbZJzJ-fkh6fna2BI",
  y: "kCOL3pzHuzMNFQxncE3SWucFUgV0S28xv0BwdFhy0OY",
  kid: "mJd3vSaHMeCkJdbijn7ZvkoA03mOfCHUl5ms5cz5wps",
  use: "sig",
  alg: "ES256",
};
const PRINT = "mJd3vSaHMeCkJdbijn7ZvkoA03mOfCHUl5ms5cz5wps";
const b64url = (doc) => Buffer.from(JSON.stringify(doc)).toString("base64url");
const token = (kid) => `${b64url({ alg: "ES256", kid })}.${b64url({})}.sig`;

describe("verifier key pins", () => {
  it("computes the RFC 7638 thumbprint as Python does", async () => {
    assert.equal(await thumbprint(JWK), PRINT);
    assert.equal(await thumbprint({ ...JWK, crv: "P-384" }), null);
  });

  it("keeps only the pinned key, and says which key signs", async () => {
    const other = { ...JWK, kid: "other", x: JWK.y, y: JWK.x };
    const { jwks, verifierKey } = await pinJwks({ keys: [other, JWK] }, token(JWK.kid), PRINT);
    assert.deepEqual(jwks.keys, [JWK]);
    assert.equal(verifierKey, PRINT);
  });

  it("refuses a token by another key, even one whose kid claims the pinned thumbprint", async () => {
    const impostor = { ...JWK, x: JWK.y, y: JWK.x }; // same kid label, another key
    await assert.rejects(pinJwks({ keys: [impostor] }, token(JWK.kid), PRINT), /key has changed/);
  });
});

describe("who chose the verifier", () => {
  it("a server-chosen verifier is never green", () => {
    const green = { state: "green", label: "Verified TDX", reason: "Genuine." };
    const capped = capServerChosen(green);
    assert.equal(capped.state, "amber");
    assert.match(capped.notice, /cllm proxy/);
    assert.equal(capServerChosen({ state: "red", reason: "x" }).state, "red");
  });

  it("only loopback names are this machine", () => {
    for (const host of ["127.0.0.1", "127.8.9.10", "localhost", "[::1]", "::1"]) assert.ok(isLoopbackHost(host), host);
    for (const host of ["128.0.0.1", "localhost.evil.example", "10.0.0.1", "::2"]) assert.ok(!isLoopbackHost(host), host);
  });

  it("counts a verdict's lifetime from its arrival, whatever the clock says", () => {
    const result = { claims: { iat: 1000, exp: 1300 } };
    result.expiresLocal = localExpiry(result, 5_000_000); // a browser clock far off
    assert.equal(secondsLeft(result, 5_000_000 + 299), 1);
    assert.equal(secondsLeft(result, 5_000_000 + 300), 0);
    assert.equal(secondsLeft({}, 0), Infinity);
  });
});
