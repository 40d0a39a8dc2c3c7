// @vitest-environment node
// The package as Node, Jest and npm see it: the committed dist/ through package.json's exports.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve("."); // Vitest runs in client/
const node = (code: string, type: "commonjs" | "module") =>
  // Inside the package, its own name resolves through its exports, as it will for a user.
  execFileSync(process.execPath, [`--input-type=${type}`, "-e", code], { cwd: root, encoding: "utf8" }).trim();

// What a server render (or Jest in its default CommonJS mode) does with the package.
const USE = `
  const log = createLogger({ scope: "ssr", app: { name: "shop" } });
  log.info("on the server"); log.error("failed", new Error("x"));
  console.log(JSON.stringify({ sessionId: log.sessionId, stats: log.stats(), type: typeof createLogger }));`;

// Each spawns node, tsc or npm: slow on a loaded machine, hence the long timeout.
describe("the package", { timeout: 30_000 }, () => {
  it("can be require()d: the CommonJS entry, as Jest in its default mode loads it", () => {
    const out = node(`const { createLogger } = require("@client-telemetry/browser"); ${USE}
      console.log(require.resolve("@client-telemetry/browser"));`, "commonjs");
    const [result, resolved] = out.split("\n");
    expect(JSON.parse(result!)).toEqual({ sessionId: "", stats: { queued: 0, dropped: 0 }, type: "function" });
    expect(resolved).toBe(join(root, "dist/index.cjs"));
  });

  it("can be imported: the ESM entry", () => {
    const out = node(`import { createLogger } from "@client-telemetry/browser"; ${USE}
      console.log(import.meta.resolve("@client-telemetry/browser"));`, "module");
    const [result, resolved] = out.split("\n");
    expect(JSON.parse(result!)).toEqual({ sessionId: "", stats: { queued: 0, dropped: 0 }, type: "function" });
    expect(resolved).toBe(`file://${join(root, "dist/index.js")}`);
  });

  it("type-checks as front-end code uses it, from the shipped declarations, as CommonJS and as ESM", () => {
    const app = mkdtempSync(join(tmpdir(), "client-telemetry-consumer-"));
    try {
      mkdirSync(join(app, "node_modules/@client-telemetry"), { recursive: true });
      symlinkSync(root, join(app, "node_modules/@client-telemetry/browser"));
      const code = `import { createLogger, type TelemetryEvent } from "@client-telemetry/browser";
        interface OrderContext { orderId: string; total: number } // an interface: no index signature
        const telemetry = createLogger({ scope: "checkout", app: { name: "shop", version: "1.4.2" } });
        const order: OrderContext = { orderId: "o-1", total: 42 };
        telemetry.info("ordered", order);
        try { JSON.parse("{"); } catch (e) { telemetry.error("failed", e); telemetry.error("failed", e, order); }
        export const id: string = telemetry.sessionId;
        export const scrub = (e: TelemetryEvent): TelemetryEvent => ({ ...e, context: { ...e.context, email: "[redacted]" } });`;
      writeFileSync(join(app, "jest-style.cts"), code);
      writeFileSync(join(app, "next-style.mts"), code);
      writeFileSync(
        join(app, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: { module: "node16", moduleResolution: "node16", strict: true, noEmit: true, lib: ["ES2022", "DOM"], types: [] },
          files: ["jest-style.cts", "next-style.mts"],
        }),
      );
      const trace = execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", app, "--traceResolution"], { encoding: "utf8" });
      expect(trace.match(/resolved to '[^']*(dist\/index\.d\.c?ts)'/g)?.map((m) => m.split("dist/")[1])).toEqual(["index.d.cts'", "index.d.ts'"]);
    } finally {
      rmSync(app, { recursive: true, force: true });
    }
  });

  it("packs from a fresh checkout, without npm ci: dist/ is committed, nothing is built", () => {
    const checkout = mkdtempSync(join(tmpdir(), "client-telemetry-pack-"));
    try {
      const tracked = execFileSync("git", ["ls-files", "."], { cwd: root, encoding: "utf8" }).trim().split("\n");
      for (const file of tracked) cpSync(join(root, file), join(checkout, file));
      const [packed] = JSON.parse(
        execFileSync("npm", ["pack", "--json", "--pack-destination", checkout], {
          cwd: checkout,
          encoding: "utf8",
          stdio: ["ignore", "pipe", "ignore"],
        }),
      );
      expect(packed.files.map((f: { path: string }) => f.path).sort()).toEqual([
        "README.md",
        "dist/client-telemetry-solver.min.js",
        "dist/client-telemetry.min.js",
        "dist/index.cjs",
        "dist/index.d.cts",
        "dist/index.d.ts",
        "dist/index.js",
        "package.json",
      ]);
      expect(readdirSync(checkout)).toContain("client-telemetry-browser-0.2.0.tgz");
    } finally {
      rmSync(checkout, { recursive: true, force: true });
    }
  });
});
