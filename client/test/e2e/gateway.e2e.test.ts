// The client in real headless Chromium against the real gateway binary. The page is served from
// another origin than the gateway, so every request is cross-origin, as on a real site.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { chromiumSuite, clientDir, committedBuild, emulateVisibility, Gateway, waitFor, watch } from "./support";

const suite = chromiumSuite();

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startGateway(env: Record<string, string> = {}) {
  suite.gateway = await Gateway.start({ CLIENT_TELEMETRY_ALLOWED_ORIGINS: suite.pages.origin, ...env });
  return suite.gateway;
}

async function open(path: string, gw: Gateway, params: Record<string, string | number> = {}) {
  const page = await suite.context.newPage();
  const watched = watch(page, gw.endpoint);
  await page.goto(suite.pages.url(path, { endpoint: gw.endpoint, gateway: gw.origin, ...params }));
  await page.waitForFunction(() => "telemetry" in window);
  return { page, ...watched };
}

describe("the client in Chromium against the gateway", () => {
  it("sends 25 events as two requests: 20 at once, then 5 after the interval", async () => {
    const gw = await startGateway();
    const { page, requests, answers, errors } = await open("/iife", gw);
    const sessionId = await page.evaluate(() => (window as any).telemetry.sessionId as string);

    const started = Date.now();
    await page.evaluate(() => (window as any).logMany(25));
    const events = await gw.waitForEvents(25);
    await waitFor("both answers", () => answers.length === 2);

    expect(requests.map((r) => [r.method, r.events])).toEqual([
      ["POST", 20],
      ["POST", 5],
    ]);
    expect(requests[0]!.at - started).toBeLessThan(1000);
    expect(requests[1]!.at - started).toBeGreaterThanOrEqual(1900); // the 2 s interval
    expect(answers.map((a) => a.status)).toEqual([204, 204]); // readable: CORS works
    expect(events.map((e) => e.message)).toEqual(Array.from({ length: 25 }, (_, i) => `event ${i}`));
    for (const [i, e] of events.entries()) {
      expect(e).toMatchObject({ level: "info", scope: "e2e", sessionId, context: { i } });
      expect(e.timestamp).toMatch(RFC3339);
    }
    await sleep(2500);
    expect(requests).toHaveLength(2);
    expect(await gw.metric("client_telemetry_requests_total", 'route="native",status="204"')).toBe(2);
    expect(errors).toEqual([]);
  });

  it("delivers what is pending when the tab is hidden and when the page is left", async () => {
    const gw = await startGateway();
    // The ESM build, as a browser without a bundler runs it: no `process` anywhere.
    const { page, requests, errors } = await open("/esm", gw, { interval: 60_000 });

    await page.evaluate(() => (window as any).logMany(3));
    await emulateVisibility(page, "hidden");
    await gw.waitForEvents(3, 5000); // long before the 60 s interval
    expect(requests.map((r) => [r.type, r.events])).toEqual([["ping", 3]]); // ping: a beacon

    await emulateVisibility(page, "visible");
    await page.evaluate(() => (window as any).logMany(2, 3));
    await page.goto(`${suite.pages.origin}/next`); // pagehide and visibilitychange both fire
    await gw.waitForEvents(5, 5000);
    await sleep(500);
    expect(gw.events.map((e) => e.message)).toEqual(["event 0", "event 1", "event 2", "event 3", "event 4"]);
    // Two requests in all (the page's request events stop at the navigation; the gateway counts).
    expect(await gw.metric("client_telemetry_requests_total", 'route="native",status="204"')).toBe(2);
    expect(errors).toEqual([]);
  });

  it("does not hammer a gateway answering 429: it waits for Retry-After, then delivers everything", async () => {
    // One request per 3 s per client; the page would flush every 500 ms if it did not listen.
    const gw = await startGateway({
      CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS: "1",
      CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS: "3000",
    });
    const { page, requests, answers, errors } = await open("/iife", gw, { batchSize: 10, interval: 500 });

    await page.evaluate(() => (window as any).logMany(10));
    await gw.waitForEvents(10);
    await page.evaluate(() => (window as any).logMany(10, 10)); // refused: 429
    await waitFor("the 429", () => answers.find((a) => a.status === 429));
    for (let i = 20; i < 30; i++) {
      await page.evaluate((from) => (window as any).logMany(1, from), i);
      if (i === 25) await emulateVisibility(page, "hidden"); // not even the unload path may send
      await sleep(150);
    }
    const events = await gw.waitForEvents(30, 20_000);
    await sleep(1000);

    expect(events.map((e) => e.message)).toEqual(Array.from({ length: 30 }, (_, i) => `event ${i}`));
    const limited = answers.filter((a) => a.status === 429);
    expect(limited.length).toBeGreaterThanOrEqual(1);
    // After every 429 the next request waited for Retry-After (small slack: two clocks, one event loop).
    for (const a of limited) {
      const next = requests.find((r) => r.at > a.at);
      if (next) expect(next.at - a.at).toBeGreaterThanOrEqual(a.retryAfter! * 1000 - 200);
    }
    // 10 + 10 + 10 events need 3 accepted requests; a client that ignored 429 would send ~15.
    expect(requests.length).toBe(answers.length);
    expect(requests.length).toBeLessThanOrEqual(3 + limited.length);
    expect(limited.length).toBeLessThanOrEqual(3);
    // What the gateway counted agrees with what the page saw: no request went unseen.
    expect(await gw.metric("client_telemetry_requests_total", 'route="native",status="429"')).toBe(limited.length);
    expect(await gw.metric("client_telemetry_requests_total", 'route="native",status="204"')).toBe(3);
    // Chromium itself logs each refused request; nothing else may appear.
    expect(errors.filter((e) => !/status of 429/.test(e))).toEqual([]);
  });

  it("limits each tab by its own session: a runaway tab is refused while another tab behind the same address goes on", async () => {
    const gw = await startGateway({
      CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS: "10",
      CLIENT_TELEMETRY_RATE_LIMIT_SESSION_MAX_REQUESTS: "1",
      CLIENT_TELEMETRY_RATE_LIMIT_DEDUP_WINDOW_MS: "60000",
    });
    const runaway = await open("/iife", gw, { batchSize: 10 });
    const other = await open("/iife", gw, { batchSize: 10 });

    await runaway.page.evaluate(() => (window as any).logMany(10));
    await gw.waitForEvents(10);
    await runaway.page.evaluate(() => (window as any).logMany(10, 10));
    await waitFor("the runaway tab's 429", () => runaway.answers.find((a) => a.status === 429));
    await other.page.evaluate(() => (window as any).logMany(10, 100));
    const events = await gw.waitForEvents(20);

    expect(events.map((e) => e.message).slice(10)).toEqual(Array.from({ length: 10 }, (_, i) => `event ${i + 100}`));
    const sessionOf = async (w: typeof runaway) => w.page.evaluate(() => (window as any).telemetry.sessionId as string);
    for (const tab of [runaway, other]) {
      const session = await sessionOf(tab);
      expect(tab.requests.map((r) => r.url.searchParams.get("session"))).toEqual(tab.requests.map(() => session));
      for (const r of tab.requests) expect(r.url.searchParams.get("batch")).toMatch(/^[0-9a-f-]{32,36}$/);
    }
    expect(await gw.metric("client_telemetry_rate_limit_decisions_total", 'backend="memory",decision="session_limited"')).toBe(1);
    expect([...runaway.errors, ...other.errors].filter((e) => !/status of 429/.test(e))).toEqual([]);
  });

  it("serves the committed browser build at /client-telemetry.js, and it works from a script tag", async () => {
    const gw = await startGateway();
    const served = await fetch(`${gw.origin}/client-telemetry.js`);
    expect(served.status, "GET /client-telemetry.js (docs/contract.md)").toBe(200);
    expect(served.headers.get("content-type")).toMatch(/javascript/);
    expect(await served.text()).toBe(committedBuild);

    const { page, requests, errors } = await open("/served", gw);
    await page.evaluate(() => {
      (window as any).telemetry.warn("from the served script", { via: "script tag" });
      return (window as any).telemetry.flush();
    });
    const [event] = await gw.waitForEvents(1);
    expect(event).toMatchObject({ level: "warn", message: "from the served script", context: { via: "script tag" } });
    expect(requests).toHaveLength(1);
    expect(errors).toEqual([]);
  });

  it("serves the demo page at /demo: its buttons send a batch the gateway logs", async () => {
    const gw = await startGateway();
    const demo = await fetch(`${gw.origin}/demo`);
    expect(demo.status, "GET /demo (docs/contract.md)").toBe(200);
    expect(demo.headers.get("content-type")).toMatch(/text\/html/);
    expect(await demo.text()).toBe(readFileSync(resolve(clientDir, "demo/index.html"), "utf8"));

    const page = await suite.context.newPage();
    const { requests, errors } = watch(page, gw.endpoint); // same origin: the demo uses the default endpoint
    await page.goto(`${gw.origin}/demo`);
    for (const name of [/info/i, /warn/i, /error/i, /flush/i]) await page.getByRole("button", { name }).click();
    const events = await gw.waitForEvents(3);
    expect(events.map((e) => [e.level, e.scope])).toEqual([
      ["info", "demo"],
      ["warn", "demo"],
      ["error", "demo"],
    ]);
    expect(requests.map((r) => r.events)).toEqual([3]);
    await page.waitForFunction(() => document.querySelector("#sent")?.textContent?.includes("204"));
    expect(errors).toEqual([]);

    // The two bugs on purpose: an uncaught exception and an unhandled rejection, captured.
    await page.getByRole("button", { name: /throw/i }).click();
    await page.getByRole("button", { name: /reject/i }).click();
    await page.getByRole("button", { name: /flush/i }).click();
    const captured = (await gw.waitForEvents(5)).slice(3);
    expect(captured.map((e) => [e.level, e.scope, e.message])).toEqual([
      ["error", "window", "Uncaught TypeError: Cannot read properties of undefined (reading 'percent')"],
      ["error", "window", "Uncaught (in promise) Error: cart service unavailable"],
    ]);
    const sent = JSON.parse(requests[1]!.body);
    expect(sent.app).toEqual({ name: "demo", version: "1.0.0", environment: "local" });
    expect(sent.events[0].exception.stacktrace).toMatch(/at HTMLButtonElement\.applyDiscount /);
    expect(sent.events[1].exception.stacktrace).toMatch(/at loadCart [^]*\nCaused by: Error: HTTP 503 from \/api\/cart/);
    // What was sent is shown on the page, exception included.
    await page.waitForFunction(() => document.querySelector("#sent")?.textContent?.includes("cart service unavailable"));
    expect(errors).toEqual([
      "pageerror: Cannot read properties of undefined (reading 'percent')",
      "pageerror: cart service unavailable",
    ]);
  });
});
