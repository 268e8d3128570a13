// Builds the UI into the cllm package (src/cllm/server/static/), where `cllm serve` measures it
// as `cllm.ui` at start and serves it at `/`. Output is deterministic (same sources, same
// bytes), so the UI digest is a reproducible reference value. index.html is written last: its
// presence marks a complete build (the Makefile uses it as the stamp).
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const out = here("../src/cllm/server/static/");

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const common = { bundle: true, minify: true, charset: "utf8", logLevel: "warning", legalComments: "eof" };
await build({
  ...common,
  entryPoints: [here("src/main.js")],
  outfile: `${out}app.js`,
  format: "esm",
  target: ["es2022"],
});
await build({ ...common, entryPoints: [here("src/style.css")], outfile: `${out}app.css` });
await copyFile(here("src/favicon.svg"), `${out}favicon.svg`);
await copyFile(here("src/index.html"), `${out}index.html`);
console.log(`UI built into ${out}`);
