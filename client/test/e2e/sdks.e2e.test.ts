// The SDKs teams already run, unchanged but for the gateway's URL, in real headless Chromium: the
// OpenTelemetry JS logs SDK with its OTLP http (JSON) and proto exporters, and the Grafana Faro web
// SDK. Every record reaches a recording collector behind the gateway with its session and exception
// attributes and the planted PII redacted; a limited export is retried after `Retry-After`.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { build } from "esbuild";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { clientDir, Gateway, launchChromium, waitFor } from "./support";

// OTLP/JSON as the gateway forwards it (OTEL_EXPORTER_OTLP_LOGS_PROTOCOL=http/json).
interface AnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
}
interface KeyValue {
  key: string;
  value: AnyValue;
}
interface Exported {
  resource: Record<string, AnyValue>;
  scope: string;
  severityNumber: number;
  body: string;
  attributes: Record<string, AnyValue>;
}

/** A collector that records every export (OTLP/JSON) and answers 200. */
class Collector {
  readonly records: Exported[] = [];
  private constructor(
    private readonly server: Server,
    readonly endpoint: string,
  ) {}

  static async start(): Promise<Collector> {
    let collector: Collector | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        const map = (kvs: KeyValue[] = []) => Object.fromEntries(kvs.map((kv) => [kv.key, kv.value]));
        for (const rl of body.resourceLogs ?? []) {
          for (const sl of rl.scopeLogs ?? []) {
            for (const r of sl.logRecords ?? []) {
              collector!.records.push({
                resource: map(rl.resource?.attributes),
                scope: sl.scope?.name,
                severityNumber: r.severityNumber,
                body: r.body?.stringValue ?? "",
                attributes: map(r.attributes),
              });
            }
          }
        }
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    collector = new Collector(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/logs`);
    return collector;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

// The pages' scripts, bundled from the npm packages as an app's bundler would.
const otlpPage = `
  import { SeverityNumber } from "@opentelemetry/api-logs";
  import { OTLPLogExporter as HttpExporter } from "@opentelemetry/exporter-logs-otlp-http";
  import { OTLPLogExporter as ProtoExporter } from "@opentelemetry/exporter-logs-otlp-proto";
  import { resourceFromAttributes } from "@opentelemetry/resources";
  import { BatchLogRecordProcessor, LoggerProvider } from "@opentelemetry/sdk-logs";
  const p = new URLSearchParams(location.search);
  const Exporter = p.get("exporter") === "proto" ? ProtoExporter : HttpExporter;
  // The only configuration that points at the gateway: its URL.
  const exporter = new Exporter({ url: p.get("gateway") + "/v1/logs" });
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ "service.name": "shop", "service.version": "2.0.0" }),
    processors: [new BatchLogRecordProcessor({ exporter })],
  });
  const logger = provider.getLogger("checkout");
  const session = "sess-" + Math.random().toString(36).slice(2);
  // Every answer the exporter gets, with its time and Retry-After.
  const calls = [];
  const original = window.fetch;
  window.fetch = async (...args) => {
    const response = await original(...args);
    calls.push({ at: performance.now(), status: response.status, retryAfter: response.headers.get("retry-after") });
    return response;
  };
  function placeOrder() { const order = null; return order.total; }
  Object.assign(window, {
    session, calls,
    info(message) {
      logger.emit({ severityNumber: SeverityNumber.INFO, severityText: "INFO", body: message,
        attributes: { "session.id": session, "user.email": "jane.doe@example.com", items: 3 } });
    },
    error() {
      try { placeOrder(); } catch (e) {
        logger.emit({ severityNumber: SeverityNumber.ERROR, severityText: "ERROR", body: "checkout failed for jane.doe@example.com",
          attributes: { "session.id": session, "exception.type": e.name, "exception.message": e.message, "exception.stacktrace": e.stack } });
      }
    },
    flush: () => provider.forceFlush(),
  });
  window.ready = true;`;

const faroPage = `
  import { initializeFaro } from "@grafana/faro-web-sdk";
  const p = new URLSearchParams(location.search);
  // The only configuration that points at the gateway: its URL.
  window.app = initializeFaro({ url: p.get("gateway") + "/collect", app: { name: "shop", version: "3.0.0" } });
  window.crash = () => setTimeout(function placeOrder() { const order = null; return order.total; });
  window.ready = true;`;

async function bundle(source: string): Promise<string> {
  const result = await build({
    stdin: { contents: source, resolveDir: clientDir, loader: "js" },
    bundle: true,
    format: "esm",
    write: false,
    logLevel: "silent",
    define: { "process.env.NODE_ENV": '"production"' },
  });
  return result.outputFiles[0]!.text;
}

let browser: Browser;
let context: BrowserContext;
let pages: Server;
let pagesOrigin: string;
let collector: Collector;
let gateway: Gateway | undefined;

beforeAll(async () => {
  const [otlp, faro] = await Promise.all([bundle(otlpPage), bundle(faroPage)]);
  const html = (script: string) => `<!doctype html><meta charset="utf-8"><title>sdk e2e</title><script type="module" src="${script}"></script>`;
  const routes: Record<string, [string, string]> = {
    "/otlp": ["text/html", html("/otlp.js")],
    "/faro": ["text/html", html("/faro.js")],
    "/otlp.js": ["text/javascript", otlp],
    "/faro.js": ["text/javascript", faro],
  };
  pages = createServer((req, res) => {
    const route = routes[new URL(req.url ?? "/", "http://page").pathname];
    if (!route) return void res.writeHead(req.url === "/favicon.ico" ? 204 : 404).end();
    res.writeHead(200, { "content-type": `${route[0]}; charset=utf-8` }).end(route[1]);
  });
  await new Promise<void>((r) => pages.listen(0, "127.0.0.1", r));
  pagesOrigin = `http://127.0.0.1:${(pages.address() as AddressInfo).port}`;
  browser = await launchChromium();
}, 120_000);
afterAll(async () => {
  await browser?.close();
  pages?.closeAllConnections();
  await new Promise((r) => pages?.close(r));
});
beforeEach(async () => {
  context = await browser.newContext();
  collector = await Collector.start();
});
afterEach(async () => {
  await context.close();
  await gateway?.stop();
  gateway = undefined;
  await collector.stop();
});

async function open(path: string, params: Record<string, string>, env: Record<string, string> = {}) {
  gateway = await Gateway.start({
    CLIENT_TELEMETRY_ALLOWED_ORIGINS: pagesOrigin,
    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: collector.endpoint,
    OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: "http/json",
    CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS: "20",
    ...env,
  });
  const page: Page = await context.newPage();
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().includes("placeOrder")) errors.push(m.text());
  });
  const query = new URLSearchParams({ gateway: gateway.origin, ...params });
  await page.goto(`${pagesOrigin}${path}?${query}`);
  await page.waitForFunction(() => (window as any).ready === true);
  return { gw: gateway, page, errors };
}

const text = (v: AnyValue | undefined) => v?.stringValue;

describe("the OpenTelemetry JS logs SDK and Grafana Faro, pointed at the gateway", () => {
  for (const exporter of ["http", "proto"]) {
    it(`OTLP ${exporter} exporter: records arrive with resource, scope, session and exception, PII redacted`, async () => {
      const { gw, page, errors } = await open("/otlp", { exporter });
      const session = await page.evaluate(() => (window as any).session as string);
      await page.evaluate(() => {
        (window as any).info("hello from jane.doe@example.com");
        (window as any).error();
        return (window as any).flush();
      });
      await waitFor("two records at the collector", () => collector.records.length >= 2);
      const [info, error] = collector.records;
      for (const record of [info!, error!]) {
        expect(text(record.resource["service.name"])).toBe("shop");
        expect(text(record.resource["service.version"])).toBe("2.0.0");
        expect(record.scope).toBe("checkout");
        expect(text(record.attributes["session.id"])).toBe(session);
        expect(JSON.stringify(record)).not.toContain("jane.doe@example.com");
      }
      expect(info!.body).toMatch(/^hello from /);
      expect(Number(info!.attributes["items"]!.intValue)).toBe(3);
      expect(error!.severityNumber).toBe(17);
      expect(text(error!.attributes["exception.type"])).toBe("TypeError");
      expect(text(error!.attributes["exception.message"])).toContain("reading 'total'");
      expect(text(error!.attributes["exception.stacktrace"])).toMatch(/at placeOrder \(/);
      expect(await gw.metric("client_telemetry_requests_total", 'route="otlp",status="200"')).toBeGreaterThanOrEqual(1);
      expect(errors).toEqual([]);
    });
  }

  it("Faro: a log, a thrown error and a measurement arrive with the Faro session, PII redacted", async () => {
    const { gw, page } = await open("/faro", {});
    const session = await page.evaluate(() => (window as any).app.api.getSession().id as string);
    await page.evaluate(() => {
      const faro = (window as any).app;
      faro.api.pushLog(["hello from jane.doe@example.com"]);
      faro.api.pushMeasurement({ type: "cart", values: { items: 3 } });
      (window as any).crash();
    });
    const find = () => ({
      log: collector.records.find((r) => r.scope === "faro.logs" && r.body.startsWith("hello from")),
      error: collector.records.find((r) => r.scope === "faro.exceptions" && text(r.attributes["exception.type"]) === "TypeError"),
      measurement: collector.records.find((r) => r.scope === "faro.measurements" && r.body === "cart"),
    });
    await waitFor("the log, the error and the measurement at the collector", () => {
      const f = find();
      return f.log && f.error && f.measurement;
    });
    const { log, error, measurement } = find();
    for (const record of [log!, error!, measurement!]) {
      expect(text(record.resource["service.name"])).toBe("shop");
      expect(text(record.resource["service.version"])).toBe("3.0.0");
      expect(text(record.resource["telemetry.sdk.name"])).toBe("faro-web");
      expect(text(record.attributes["session.id"])).toBe(session);
    }
    expect(JSON.stringify(collector.records)).not.toContain("jane.doe@example.com");
    expect(text(error!.attributes["exception.message"])).toContain("reading 'total'");
    expect(text(error!.attributes["exception.stacktrace"])).toMatch(/at placeOrder \(/);
    expect(Number(measurement!.attributes["items"]!.intValue)).toBe(3);
    expect(await gw.metric("client_telemetry_requests_total", 'route="faro",status="202"')).toBeGreaterThanOrEqual(1);
  });

  it("a limited OTLP export gets 429 with Retry-After, and the SDK's retry arrives after it and is accepted", async () => {
    const { page } = await open("/otlp", { exporter: "http" }, {
      CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS: "1",
      CLIENT_TELEMETRY_RATE_LIMIT_WINDOW_MS: "2000",
    });
    await page.evaluate(() => {
      (window as any).info("first");
      return (window as any).flush();
    });
    await page.evaluate(() => {
      (window as any).info("second");
      return (window as any).flush();
    });
    const calls = await page.evaluate(() => (window as any).calls as { at: number; status: number; retryAfter: string | null }[]);
    expect(calls.map((c) => c.status)).toEqual([200, 429, 200]);
    const retryAfter = Number(calls[1]!.retryAfter);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(calls[2]!.at - calls[1]!.at).toBeGreaterThanOrEqual(retryAfter * 1000 - 50);
    await waitFor("both records at the collector", () => collector.records.length >= 2);
    expect(collector.records.map((r) => r.body)).toEqual(["first", "second"]);
  });
});
