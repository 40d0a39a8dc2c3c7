// How long the challenge solver takes in headless Chromium (docs/benchmarks.md#challenge): solves
// fresh random challenges one after another, each in a new Web Worker started from a Blob as the
// client does, and prints the mean and percentiles in milliseconds (worker start included).
//   node scripts/solve-time.mjs [difficulty=12] [solves=40]
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const [difficulty = 12, solves = 40] = process.argv.slice(2).map(Number);
const solver = readFileSync(fileURLToPath(new URL("../dist/client-telemetry-solver.min.js", import.meta.url)), "utf8");
// A page on http://127.0.0.1, a secure context: crypto.subtle exists there.
const server = createServer((_, res) => res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html>"));
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_BIN ?? "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu"] });
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  const times = await page.evaluate(
    async ([solver, difficulty, solves]) => {
      const times = [];
      for (let i = 0; i < solves; i++) {
        const nonce = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
        const challenge = `c1.9999999999.${difficulty}.${nonce}.${"0".repeat(64)}`;
        const started = performance.now();
        const worker = new Worker(URL.createObjectURL(new Blob([solver])));
        await new Promise((solved) => {
          worker.onmessage = solved;
          worker.postMessage(challenge);
        });
        times.push(performance.now() - started);
      }
      return times;
    },
    [solver, difficulty, solves],
  );
  times.sort((a, b) => a - b);
  const at = (q) => Math.round(times[Math.min(times.length - 1, Math.floor(q * times.length))]);
  const mean = Math.round(times.reduce((a, b) => a + b, 0) / times.length);
  console.log(`difficulty ${difficulty}, ${solves} solves: mean ${mean} ms, p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${at(1)} ms`);
} finally {
  await browser.close();
  server.close();
}
