// Builds dist/: the npm package (ESM + .d.ts) and the browser build the gateway serves at
// GET /client-telemetry.js (embedded from the committed dist/client-telemetry.min.js).
// `--check` rebuilds the browser build in memory and fails if the committed file differs.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
export const BROWSER_BUILD = `${root}dist/client-telemetry.min.js`;
const common = { entryPoints: [`${root}src/index.ts`], bundle: true, target: "es2020", logLevel: "warning" };

// The minified IIFE that defines window.ClientTelemetry. A <script> tag has no bundler to inline
// the Next.js variables, so they are left out.
const browser = {
  ...common,
  format: "iife",
  globalName: "ClientTelemetry",
  minify: true,
  define: Object.fromEntries(
    ["ENDPOINT", "BATCH_SIZE", "FLUSH_INTERVAL_MS"].map((k) => [`process.env.NEXT_PUBLIC_CLIENT_TELEMETRY_${k}`, "undefined"]),
  ),
};

export async function browserBuild() {
  return (await build({ ...browser, write: false })).outputFiles[0].text;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes("--check")) {
    if ((await browserBuild()) !== readFileSync(BROWSER_BUILD, "utf8")) {
      console.error("dist/client-telemetry.min.js is out of date with src/: run `npm run build` and commit it");
      process.exit(1);
    }
    console.log("dist/client-telemetry.min.js matches src/");
  } else {
    await build({ ...common, format: "esm", outfile: `${root}dist/index.js` });
    await build({ ...browser, outfile: BROWSER_BUILD });
    execFileSync(`${root}node_modules/.bin/tsc`, ["-p", `${root}tsconfig.json`, "--emitDeclarationOnly"], { stdio: "inherit" });
  }
}
