// Measures the browser build minified + gzipped (what a page downloads) and keeps the number
// stated in client/README.md and the repository's README.md true: `--check` fails when either
// differs, `--write` updates both.
import { readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const min = readFileSync(`${root}dist/client-telemetry.min.js`);
const gz = gzipSync(min, { level: 9 }).length;
const statement = `**${gz.toLocaleString("en")} bytes** minified and gzipped (${min.length.toLocaleString("en")} bytes minified)`;
const pattern = /\*\*[\d,]+ bytes\*\* minified and gzipped \([\d,]+ bytes minified\)/;
console.log(`dist/client-telemetry.min.js: ${statement.replaceAll("**", "")}`);

for (const [name, path] of [["client/README.md", `${root}README.md`], ["README.md", `${root}../README.md`]]) {
  const readme = readFileSync(path, "utf8");
  if (process.argv.includes("--write")) {
    writeFileSync(path, readme.replace(pattern, statement));
  } else if (process.argv.includes("--check") && readme.match(pattern)?.[0] !== statement) {
    console.error(`${name} must state the size: ${statement} (run \`npm run size -- --write\`)`);
    process.exit(1);
  }
}
if (gz > 3 * 1024) {
  console.error(`the browser build is over the 3 KB budget: ${gz} bytes`);
  process.exit(1);
}
