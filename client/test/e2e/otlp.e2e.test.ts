// The whole pipe, from a page in headless Chromium to what an OpenTelemetry Collector receives:
// the page's uncaught error and unhandled rejection arrive as OTLP log records with `exception.*`
// and a stack naming the throwing function, under the app's service, one `session.id` across a
// same-tab navigation, and the page's `url.full` without its query string and fragment.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Gateway, launchChromium, PageServer, waitFor, watch } from "./support";

/** An OTLP/HTTP collector that records every `POST /v1/logs` body (OTLP/JSON) and answers 200. */
class RecordingCollector {
  readonly exports: { contentType: string | undefined; body: OtlpExport }[] = [];
  private constructor(private readonly server: Server) {}

  static async start(): Promise<RecordingCollector> {
    const collector: RecordingCollector = new RecordingCollector(
      createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          if (req.method !== "POST" || req.url !== "/v1/logs") return void res.writeHead(404).end();
          const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as OtlpExport;
          collector.exports.push({ contentType: req.headers["content-type"], body });
          res.writeHead(200, { "content-type": "application/json" }).end("{}");
        });
      }),
    );
    await new Promise<void>((r) => collector.server.listen(0, "127.0.0.1", r));
    return collector;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1/logs`;
  }

  /** Every log record received so far, with its resource's and its own attributes as plain values. */
  records(): Received[] {
    return this.exports.flatMap(({ body }) =>
      body.resourceLogs.flatMap((rl) =>
        rl.scopeLogs.flatMap((sl) =>
          sl.logRecords.map((r) => ({
            resource: attributes(rl.resource.attributes),
            scope: sl.scope?.name,
            severity: r.severityText,
            body: r.body?.stringValue,
            attributes: attributes(r.attributes),
          })),
        ),
      ),
    );
  }

  waitForRecords(count: number): Promise<Received[]> {
    return waitFor(`${count} log records at the collector (have ${this.records().length})`, () => {
      const records = this.records();
      return records.length >= count ? records : undefined;
    });
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

// The parts of OTLP/JSON this test reads (opentelemetry-proto's ExportLogsServiceRequest).
interface OtlpValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  arrayValue?: { values?: OtlpValue[] };
}
interface OtlpKeyValue {
  key: string;
  value: OtlpValue;
}
interface OtlpExport {
  resourceLogs: {
    resource: { attributes: OtlpKeyValue[] };
    scopeLogs: {
      scope?: { name?: string };
      logRecords: { severityText?: string; body?: OtlpValue; attributes: OtlpKeyValue[] }[];
    }[];
  }[];
}
interface Received {
  resource: Record<string, unknown>;
  scope: string | undefined;
  severity: string | undefined;
  body: string | undefined;
  attributes: Record<string, unknown>;
}

const plain = (v: OtlpValue): unknown =>
  v.stringValue ?? v.boolValue ?? v.intValue ?? (v.arrayValue ? (v.arrayValue.values ?? []).map(plain) : undefined);
const attributes = (kvs: OtlpKeyValue[] = []) => Object.fromEntries(kvs.map((kv) => [kv.key, plain(kv.value)]));

let browser: Browser;
let pages: PageServer;
let collector: RecordingCollector;
let gateway: Gateway;

beforeAll(async () => {
  [pages, collector, browser] = await Promise.all([PageServer.start(), RecordingCollector.start(), launchChromium()]);
  gateway = await Gateway.start({
    CLIENT_TELEMETRY_ALLOWED_ORIGINS: pages.origin,
    CLIENT_TELEMETRY_ALLOWED_APPS: "shop",
    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: collector.endpoint,
    OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: "http/json",
    CLIENT_TELEMETRY_OTLP_BATCH_DELAY_MS: "50",
  });
});
afterAll(async () => {
  await browser?.close();
  await gateway?.stop();
  await Promise.all([pages?.stop(), collector?.stop()]);
});

describe("a page's errors at an OpenTelemetry Collector", () => {
  it("arrive with exception.*, the stack, the app's service, one session.id across pages and url.full without the query", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const watched = watch(page, gateway.endpoint);
    const app = { app: "shop", version: "1.4.2", env: "production" };
    // A secret in the query string and a fragment: neither may reach the collector.
    const open = async (path: string) => {
      await page.goto(`${pages.url(path, { endpoint: gateway.endpoint, ...app })}&token=a1b2c3d4e5f6#frag`);
      await page.waitForFunction(() => "telemetry" in window);
    };

    // Page A throws and rejects.
    await open("/iife");
    const sessionId = await page.evaluate(() => (window as any).telemetry.sessionId as string);
    const userAgent = await page.evaluate(() => navigator.userAgent);
    await page.evaluate(() => (window as any).crash());
    await page.evaluate(() => (window as any).rejectLater());
    await waitFor("both errors to reach the page", () => watched.errors.length === 2);
    await page.evaluate(() => (window as any).telemetry.flush());
    await collector.waitForRecords(2);

    // Page B of the same site, in the same tab, with the other build: it throws too.
    await open("/esm");
    await page.evaluate(() => (window as any).crash());
    await waitFor("the error on page B", () => watched.errors.length === 3);
    await page.evaluate(() => (window as any).telemetry.flush());
    const records = await collector.waitForRecords(3);
    await context.close();

    expect(watched.answers.map((a) => a.status)).toEqual([204, 204]);
    expect(collector.exports.every((e) => e.contentType === "application/json")).toBe(true);
    expect(records).toHaveLength(3);
    const [thrown, rejected, onB] = records as [Received, Received, Received];

    // The uncaught error: type, message and a stack whose top frame is the throwing function.
    expect(thrown).toMatchObject({
      scope: "window",
      severity: "ERROR",
      body: "Uncaught TypeError: Cannot read properties of null (reading 'total')",
      attributes: {
        "session.id": sessionId,
        "exception.type": "TypeError",
        "exception.message": "Cannot read properties of null (reading 'total')",
        "url.full": `${pages.origin}/iife`,
        "user_agent.original": userAgent,
      },
    });
    // Chromium names the page's URL, query included, in the frame: the gateway redacts the token
    // and keeps the frame's line and column.
    expect(thrown.attributes["exception.stacktrace"]).toMatch(
      /^TypeError: Cannot read properties of null \(reading 'total'\)\n\s+at placeOrder \(http:\/\/127\.0\.0\.1:\d+\/iife\?\S*&token=\[REDACTED:secret\]:\d+:\d+\)$/,
    );

    // The unhandled rejection, likewise.
    expect(rejected).toMatchObject({
      scope: "window",
      severity: "ERROR",
      body: "Uncaught (in promise) RangeError: cart service down",
      attributes: {
        "session.id": sessionId,
        "exception.type": "RangeError",
        "exception.message": "cart service down",
        "url.full": `${pages.origin}/iife`,
      },
    });
    expect(rejected.attributes["exception.stacktrace"]).toMatch(/^RangeError: cart service down\n\s+at loadCart \(/);

    // Page B: the same session, its own URL.
    expect(onB.attributes).toMatchObject({
      "session.id": sessionId,
      "exception.type": "TypeError",
      "url.full": `${pages.origin}/esm`,
    });
    expect(onB.attributes["exception.stacktrace"]).toMatch(/\n\s+at placeOrder \(/);

    // Every record under the app's service and release, not the gateway's name.
    for (const r of records) {
      expect(r.resource).toMatchObject({
        "service.name": "shop",
        "service.version": "1.4.2",
        "deployment.environment.name": "production",
        "telemetry.sdk.name": "@client-telemetry/browser",
        "telemetry.sdk.version": "0.2.0",
        "telemetry.sdk.language": "webjs",
        "telemetry.distro.name": "client-telemetry",
      });
      expect(r.resource["browser.brands"]).toEqual(expect.arrayContaining([expect.stringMatching(/^Chromium \d+/)]));
    }

    // Neither the query string's token nor the fragment anywhere in what the collector got.
    const received = JSON.stringify(collector.exports.map((e) => e.body));
    expect(received).not.toContain("a1b2c3d4e5f6");
    expect(received).not.toContain("frag");
  });
});
