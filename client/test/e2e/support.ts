// The real things the end-to-end tests drive: the gateway binary, a page server on another
// origin, and Debian's Chromium through playwright-core.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach } from "vitest";

export const clientDir = fileURLToPath(new URL("../..", import.meta.url));
export const committedBuild = readFileSync(resolve(clientDir, "dist/client-telemetry.min.js"), "utf8");

export interface ClientEvent {
  msg: "client event";
  level: string;
  scope: string;
  sessionId: string;
  message: string;
  timestamp: string;
  requestId: string | null;
  context: Record<string, unknown> | null;
}

export async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The gateway binary on a free port; every accepted event is one JSON line on its stdout. */
export class Gateway {
  private constructor(
    private readonly child: ChildProcess,
    readonly origin: string,
    readonly events: ClientEvent[],
    private readonly output: string[],
  ) {}

  get endpoint(): string {
    return `${this.origin}/api/client-telemetry`;
  }

  static async start(env: Record<string, string>): Promise<Gateway> {
    const bin = resolve(clientDir, process.env.GATEWAY_BIN ?? "../target/debug/client-telemetry");
    if (!existsSync(bin)) throw new Error(`no gateway binary at ${bin}: run \`cargo build\` or set GATEWAY_BIN`);
    // Only the settings of this test: none inherited from the shell.
    const inherited = Object.entries(process.env).filter(([k]) => !k.startsWith("CLIENT_TELEMETRY_") && !k.startsWith("OTEL_"));
    const child = spawn(bin, [], {
      env: { ...Object.fromEntries(inherited), CLIENT_TELEMETRY_BIND: "127.0.0.1:0", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const output: string[] = [];
    const events: ClientEvent[] = [];
    const listening = new Promise<string>((resolveAddr, reject) => {
      createInterface({ input: child.stdout! }).on("line", (line) => {
        output.push(line);
        let entry: { msg?: string; addr?: string };
        try {
          entry = JSON.parse(line);
        } catch {
          return;
        }
        if (entry.msg === "listening" && entry.addr) resolveAddr(entry.addr);
        if (entry.msg === "client event") events.push(entry as ClientEvent);
      });
      createInterface({ input: child.stderr! }).on("line", (line) => output.push(line));
      child.on("exit", (code) => reject(new Error(`gateway exited with ${code} before listening:\n${output.join("\n")}`)));
      setTimeout(() => reject(new Error(`gateway did not print "listening" within 15 s:\n${output.join("\n")}`)), 15_000);
    });
    return new Gateway(child, `http://${await listening}`, events, output);
  }

  waitForEvents(count: number, timeoutMs = 10_000): Promise<ClientEvent[]> {
    return waitFor(`${count} events in the gateway's log (have ${this.events.length})`, () =>
      this.events.length >= count ? this.events : undefined, timeoutMs);
  }

  /** A counter of /metrics (served on the ingest listener when there is no admin listener). */
  async metric(name: string, labels: string): Promise<number> {
    const text = await (await fetch(`${this.origin}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
    return line ? Number(line.split(" ").pop()) : 0;
  }

  log(): string {
    return this.output.join("\n");
  }

  /** SIGTERM; then SIGKILL after a second, as a graceful stop waits for idle keep-alive clients. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGTERM");
    const kill = setTimeout(() => this.child.kill("SIGKILL"), 1000);
    await exited;
    clearTimeout(kill);
  }
}

/** The test pages, on their own origin: every request to the gateway is cross-origin. */
export class PageServer {
  private constructor(
    private readonly server: Server,
    readonly origin: string,
  ) {}

  static async start(): Promise<PageServer> {
    // The ESM build as a browser without a bundler sees it: no `process`, no inlined variables.
    const esm = (await build({ entryPoints: [resolve(clientDir, "src/index.ts")], bundle: true, format: "esm", write: false }))
      .outputFiles[0]!.text;
    const routes: Record<string, [string, string]> = {
      "/iife": ["text/html", page(`<script src="/client-telemetry.min.js"></script><script>${start("ClientTelemetry")}</script>`)],
      "/esm": ["text/html", page(`<script type="module">import * as C from "/index.js"; ${start("C")}</script>`)],
      "/served": ["text/html", page(`<script src="GATEWAY/client-telemetry.js"></script><script>${start("ClientTelemetry")}</script>`)],
      "/next": ["text/html", page("<p>next page</p>")],
      "/client-telemetry.min.js": ["text/javascript", committedBuild],
      "/index.js": ["text/javascript", esm],
    };
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://page");
      const route = routes[url.pathname];
      if (!route) return void res.writeHead(url.pathname === "/favicon.ico" ? 204 : 404).end();
      const body = route[1].replace("GATEWAY", url.searchParams.get("gateway") ?? "");
      res.writeHead(200, { "content-type": `${route[0]}; charset=utf-8` }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return new PageServer(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  }

  url(path: string, params: Record<string, string | number>): string {
    return `${this.origin}${path}?${new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]))}`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

const page = (body: string) => `<!doctype html><meta charset="utf-8"><title>client-telemetry e2e</title>${body}`;

// The page's logger, configured from the query string: endpoint, batchSize, interval, app.
const start = (api: string) => `
  const p = new URLSearchParams(location.search);
  window.telemetry = ${api}.createLogger({
    scope: "e2e",
    endpoint: p.get("endpoint"),
    batchSize: Number(p.get("batchSize")) || undefined,
    flushIntervalMs: Number(p.get("interval")) || undefined,
    app: { name: p.get("app") || undefined, version: p.get("version") || undefined, environment: p.get("env") || undefined },
  });
  window.logMany = (count, from = 0) => {
    for (let i = from; i < from + count; i++) telemetry.info("event " + i, { i });
  };
  // An uncaught error and an unhandled rejection, each thrown by a named function of the page.
  window.crash = () => setTimeout(function placeOrder() { const order = null; return order.total; });
  window.rejectLater = () => { (async function loadCart() { throw new RangeError("cart service down"); })(); };`;

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN ?? "/usr/bin/chromium",
    // Without the background-networking flags Chromium keeps dialling Google on a closed network.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** What a Chromium test file shares: the browser and the page server (one per file), the test's
 * own browser context, and the gateway it started, if any (stopped after it). */
export interface ChromiumSuite {
  browser: Browser;
  pages: PageServer;
  context: BrowserContext;
  gateway: Gateway | undefined;
}

/** Registers the hooks every Chromium test file needs and returns what they set up. */
export function chromiumSuite(): ChromiumSuite {
  const suite = {} as ChromiumSuite;
  beforeAll(async () => {
    suite.pages = await PageServer.start();
    suite.browser = await launchChromium();
  });
  afterAll(async () => {
    await suite.browser?.close();
    await suite.pages?.stop();
  });
  beforeEach(async () => {
    suite.context = await suite.browser.newContext();
  });
  afterEach(async () => {
    await suite.context?.close();
    await suite.gateway?.stop();
    suite.gateway = undefined;
  });
  return suite;
}

/** What a page sent to the gateway, answers included, and anything that went wrong in it. */
export interface Watched {
  requests: { at: number; method: string; type: string; url: URL; body: string; events: number }[];
  answers: { at: number; status: number; retryAfter: number | null }[];
  errors: string[];
}

export function watch(page: Page, endpoint: string): Watched {
  const w: Watched = { requests: [], answers: [], errors: [] };
  page.on("pageerror", (e) => w.errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") w.errors.push(`console.${m.type()}: ${m.text()}`);
  });
  // The client adds its session and batch ids as query parameters.
  const toEndpoint = (url: string) => url.split("?")[0] === endpoint;
  page.on("request", (r) => {
    if (!toEndpoint(r.url())) return;
    const body = r.postData() ?? "";
    const events = r.method() === "POST" ? JSON.parse(body).events.length : 0;
    w.requests.push({ at: Date.now(), method: r.method(), type: r.resourceType(), url: new URL(r.url()), body, events });
  });
  page.on("response", (r) => {
    if (!toEndpoint(r.url())) return;
    const retryAfter = r.headers()["retry-after"];
    w.answers.push({ at: Date.now(), status: r.status(), retryAfter: retryAfter ? Number(retryAfter) : null });
  });
  return w;
}

/** Headless Chromium never hides a page; this is the event a tab switch would fire. */
export function emulateVisibility(page: Page, state: "hidden" | "visible"): Promise<void> {
  return page.evaluate((s) => {
    if (s === "hidden") Object.defineProperty(document, "visibilityState", { value: "hidden", configurable: true });
    else delete (document as { visibilityState?: unknown }).visibilityState; // the real one again
    document.dispatchEvent(new Event("visibilitychange"));
  }, state);
}
