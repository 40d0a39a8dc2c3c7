// What a front-end on-call needs, in real headless Chromium: the page's uncaught errors and
// rejections with their stacks, the app, page and browser once per request, and one session per
// tab across navigations. Asserted on what the page sends, and on the gateway accepting it.
import { describe, expect, it } from "vitest";
import { chromiumSuite, Gateway, waitFor, watch } from "./support";

const suite = chromiumSuite();

interface SentEvent {
  level: string;
  scope: string;
  sessionId: string;
  message: string;
  exception?: { type: string; message: string; stacktrace: string };
  context?: Record<string, unknown>;
}

async function open(path: string, params: Record<string, string | number> = {}) {
  const gw = (suite.gateway ??= await Gateway.start({ CLIENT_TELEMETRY_CORS_ALLOWED_ORIGINS: suite.pages.origin }));
  const page = await suite.context.newPage();
  const watched = watch(page, gw.endpoint);
  await page.goto(suite.pages.url(path, { endpoint: gw.endpoint, ...params }));
  await page.waitForFunction(() => "telemetry" in window);
  const bodies = () => watched.requests.map((r) => JSON.parse(r.body));
  const sent = (): SentEvent[] => bodies().flatMap((b) => b.events);
  return { gw, page, bodies, sent, ...watched };
}

describe("errors, app, page and session in Chromium", () => {
  it("sends an uncaught error and an unhandled rejection with type, message and a stack naming the function", async () => {
    const { gw, page, sent, bodies, answers, errors } = await open("/iife", { app: "shop", version: "1.4.2", env: "production" });
    const sessionId = await page.evaluate(() => (window as any).telemetry.sessionId as string);
    await page.evaluate(() => (window as any).crash());
    await page.evaluate(() => (window as any).rejectLater());
    await waitFor("the first error to be seen", () => errors.length === 2);
    await page.evaluate(() => (window as any).telemetry.flush());
    await waitFor("the gateway's answer", () => answers.length === 1);

    const [thrown, rejected] = sent();
    expect(thrown).toMatchObject({
      level: "error",
      scope: "window",
      sessionId,
      message: "Uncaught TypeError: Cannot read properties of null (reading 'total')",
      exception: { type: "TypeError", message: "Cannot read properties of null (reading 'total')" },
    });
    expect(thrown!.exception!.stacktrace).toMatch(/^TypeError: Cannot read properties of null \(reading 'total'\)\n\s+at placeOrder \(/);
    expect(rejected).toMatchObject({
      level: "error",
      scope: "window",
      sessionId,
      message: "Uncaught (in promise) RangeError: cart service down",
      exception: { type: "RangeError", message: "cart service down" },
    });
    expect(rejected!.exception!.stacktrace).toMatch(/^RangeError: cart service down\n\s+at loadCart \(/);

    // The context, once for the request: app, the page without its query string, the browser.
    const [body] = bodies();
    expect(body.app).toEqual({ name: "shop", version: "1.4.2", environment: "production" });
    expect(body.page).toEqual({ url: `${suite.pages.origin}/iife` });
    expect(body.browser.language).toBe(await page.evaluate(() => navigator.language));
    // Chromium has UA client hints on a secure page (127.0.0.1 is one); without the GREASE brand.
    expect(body.browser.brands.map((b: { brand: string }) => b.brand)).toContain("Chromium");
    expect(body.browser.brands.every((b: { brand: string }) => !/not.a.brand/i.test(b.brand))).toBe(true);
    expect(typeof body.browser.mobile).toBe("boolean");
    expect(typeof body.browser.platform).toBe("string");
    expect(body.sdk).toEqual({ name: "@client-telemetry/browser", version: "0.2.0" });

    // Today's gateway accepts the new envelope and the exception (it ignores what it does not know yet).
    expect(answers.map((a) => a.status)).toEqual([204]);
    const logged = await gw.waitForEvents(2);
    expect(logged.map((e) => [e.level, e.scope, e.message, e.sessionId])).toEqual([
      ["error", "window", thrown!.message, sessionId],
      ["error", "window", rejected!.message, sessionId],
    ]);
    // Only the two errors themselves reached the page's console: the client added nothing.
    expect(errors).toEqual([
      "pageerror: Cannot read properties of null (reading 'total')",
      "pageerror: cart service down",
    ]);
  });

  it("sends a page throwing in a loop as one event with a count", async () => {
    const { page, sent, answers } = await open("/iife", { interval: 60_000 });
    await page.evaluate(() => {
      for (let i = 0; i < 200; i++) (window as any).crash();
    });
    await page.waitForTimeout(500); // the 200 timers have run
    await page.evaluate(() => (window as any).telemetry.flush());
    await waitFor("the gateway's answer", () => answers.length === 1);
    expect(sent().map((e) => [e.message, e.context])).toEqual([
      ["Uncaught TypeError: Cannot read properties of null (reading 'total')", { "exception.count": 200 }],
    ]);
    expect(answers[0]!.status).toBe(204);
  });

  it("logs error(message, e) from a catch with the stack, and an Error inside a context", async () => {
    const { page, sent, answers, errors } = await open("/esm");
    await page.evaluate(() => {
      const log = (window as any).telemetry;
      function submitForm() {
        throw new Error("form invalid", { cause: new TypeError("email is undefined") });
      }
      try {
        submitForm();
      } catch (e) {
        log.error("Submit failed", e, { form: "signup" });
        log.warn("Submit failed, as context", { error: e });
      }
      return log.flush();
    });
    await waitFor("the gateway's answer", () => answers.length === 1);
    const [logged, warned] = sent();
    expect(logged).toMatchObject({ scope: "e2e", message: "Submit failed", context: { form: "signup" } });
    expect(logged!.exception!.stacktrace).toMatch(/^Error: form invalid\n\s+at submitForm /);
    expect(logged!.exception!.stacktrace).toContain("\nCaused by: TypeError: email is undefined\n");
    expect(warned!.context!.error).toEqual(logged!.exception);
    expect(answers[0]!.status).toBe(204);
    expect(errors).toEqual([]);
  });

  it("keeps one session id across a same-tab navigation, and sends it with every event and request", async () => {
    const { gw, page, requests } = await open("/iife", { batchSize: 1 });
    const first = await page.evaluate(() => (window as any).telemetry.sessionId as string);
    await page.evaluate(() => (window as any).telemetry.info("on the first page"));
    await gw.waitForEvents(1);

    // Another page of the same site in the same tab, with the other build: the same session.
    await page.goto(suite.pages.url("/esm", { endpoint: gw.endpoint, batchSize: 1 }));
    await page.waitForFunction(() => "telemetry" in window);
    expect(await page.evaluate(() => (window as any).telemetry.sessionId)).toBe(first);
    await page.evaluate(() => (window as any).telemetry.info("on the second page"));
    const events = await gw.waitForEvents(2);
    expect(events.map((e) => [e.message, e.sessionId])).toEqual([
      ["on the first page", first],
      ["on the second page", first],
    ]);
    expect(requests.map((r) => r.url.searchParams.get("session"))).toEqual([first, first]);

    // Another tab has its own.
    const other = await open("/iife");
    expect(await other.page.evaluate(() => (window as any).telemetry.sessionId)).not.toBe(first);
  });
});
