// Builds dist/, all of it committed, so that `npm pack` works from a fresh checkout without the
// devDependencies:
//   index.js (ESM) and index.cjs (CommonJS: Jest, require) with index.d.ts / index.d.cts;
//   client-telemetry.min.js, the browser build the gateway embeds and serves at GET /client-telemetry.js;
//   client-telemetry-solver.min.js, the challenge solver it serves at GET of the ingest route
//   (loaded by the client only when challenged, into a Web Worker: not part of any bundle).
// `--check` rebuilds in memory and fails if a committed file differs from src/.
// `--prepack` (npm pack) rebuilds when the devDependencies are installed, else packs dist/ as committed.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const dist = (file) => `${root}dist/${file}`;
const FILES = ["index.js", "index.cjs", "index.d.ts", "index.d.cts", "client-telemetry.min.js", "client-telemetry-solver.min.js"];

const common = { entryPoints: [`${root}src/index.ts`], bundle: true, target: "es2020", logLevel: "warning", write: false };
// A <script> tag has no bundler to inline the Next.js variables, so they are left out.
const ENV = ["ENDPOINT", "BATCH_SIZE", "FLUSH_INTERVAL_MS", "APP_NAME", "APP_VERSION", "APP_ENVIRONMENT"];
const browser = {
  ...common,
  entryPoints: [`${root}src/global.ts`],
  format: "iife",
  minify: true,
  // The queue's private members get one-letter names (the 3 KB budget): only the queue uses them.
  mangleProps: /^(entries|timer|sending|sendAll|holdUntil|rateLimited|failures|proof|drain|unload|take|settle|hold|requeue|schedule)$/,
  define: Object.fromEntries(ENV.map((k) => [`process.env.NEXT_PUBLIC_CLIENT_TELEMETRY_${k}`, "undefined"])),
};

/** Every file of dist/, by name, built in memory. */
async function buildAll() {
  const { build } = await import("esbuild");
  const text = async (options) => (await build(options)).outputFiles[0].text;
  // One self-contained declaration file: the public types all live in src/index.ts.
  const out = mkdtempSync(join(tmpdir(), "client-telemetry-dts-"));
  try {
    execFileSync(`${root}node_modules/.bin/tsc`, ["-p", `${root}tsconfig.json`, "--emitDeclarationOnly", "--outDir", out], {
      stdio: "inherit",
    });
    const dts = readFileSync(join(out, "index.d.ts"), "utf8");
    if (/from "\.\//.test(dts)) throw new Error("dist/index.d.ts imports another module: keep public types in src/index.ts");
    return {
      "index.js": await text({ ...common, format: "esm" }),
      "index.cjs": await text({ ...common, format: "cjs" }),
      "index.d.ts": dts,
      "index.d.cts": dts,
      "client-telemetry.min.js": await text(browser),
      "client-telemetry-solver.min.js": await text({ ...browser, entryPoints: [`${root}src/solver.ts`] }),
    };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes("--prepack") && !existsSync(`${root}node_modules/esbuild`)) {
    const missing = FILES.filter((f) => !existsSync(dist(f)));
    if (missing.length) {
      console.error(`dist/ lacks ${missing.join(", ")}: run \`npm ci && npm run build\``);
      process.exit(1);
    }
    console.error("packing the committed dist/ (no devDependencies installed to rebuild it)");
  } else if (process.argv.includes("--check")) {
    const built = await buildAll();
    const stale = FILES.filter((f) => !existsSync(dist(f)) || readFileSync(dist(f), "utf8") !== built[f]);
    if (stale.length) {
      console.error(`dist/ is out of date with src/ (${stale.join(", ")}): run \`npm run build\` and commit dist/`);
      process.exit(1);
    }
    console.log("dist/ matches src/");
  } else {
    for (const [file, text] of Object.entries(await buildAll())) writeFileSync(dist(file), text);
  }
}
