// What a verdict rests on, in words (issue 12): which software was pinned and by whom (the
// token's `reference` claim), and where the server sends prompts (its `upstream` claim). Texts
// say exactly what was checked, never more; token values only ever end up as text.

function short(hex) {
  return typeof hex === "string" ? `${hex.slice(0, 16)}…` : "?";
}

/** `{ pinned, text }`: pinned is true only when the token says the boot chain or every
 * component was compared with reference values. */
export function pinning(claims) {
  const reference = claims && typeof claims.reference === "object" ? claims.reference : null;
  const policy = claims?.policy?.id ? `“${String(claims.policy.id)}”` : "(unknown)";
  if (!reference) {
    return {
      pinned: false,
      text: `the verifier did not say which software it compared (policy ${policy})`,
    };
  }
  const what = [];
  if (reference.boot_chain === true) what.push("boot chain");
  if (reference.components === true) what.push("every component");
  if (!what.length) {
    return {
      pinned: false,
      text: `software not pinned: the verifier's policy ${policy} has no reference values, so which software runs was not checked`,
    };
  }
  const releases = (Array.isArray(reference.releases) ? reference.releases : [])
    .filter((r) => r && typeof r === "object")
    .map(
      (r) =>
        `release ${String(r.name)} ${String(r.version)} signed by publisher key sha256:${short(r.publisher_key_sha256)}`,
    );
  const by = releases.length ? releases.join("; ") : `the verifier's policy ${policy}`;
  return { pinned: true, text: `software pinned (${what.join(", ")}) by ${by}` };
}

/** Where prompts go, as the server's measured configuration says. */
export function upstreamText(claims) {
  const upstream = claims && typeof claims.upstream === "object" ? claims.upstream : null;
  switch (upstream?.scope) {
    case "embedded":
      return "prompts are processed inside the TD (embedded engine)";
    case "loopback":
      return "prompts go to an engine on the TD's own loopback interface";
    case "remote":
      return `prompts are forwarded to ${String(upstream.host ?? "?").slice(0, 255)}, outside the TD`;
    default:
      return "where prompts go is not stated";
  }
}
