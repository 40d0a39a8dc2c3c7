// The batch envelope: app, page and browser context and the SDK, once per request, not per event.
import { readFileSync } from "node:fs";
import { describe, expect, it, vi } from "vitest";
import { bodyOf, client, endpoint, eventsOf, logger, requests, setEndpoint, useHarness } from "./harness";

useHarness();

const pkg = JSON.parse(readFileSync("package.json", "utf8")); // Vitest runs in client/

/** UA client hints as Chromium has them on a secure page. */
function clientHints(brands: { brand: string; version: string }[], platform = "macOS", mobile = false) {
  Object.defineProperty(navigator, "userAgentData", { value: { brands, platform, mobile }, configurable: true });
}
const withoutClientHints = () => delete (navigator as { userAgentData?: unknown }).userAgentData;
const go = (url: string) => history.pushState({}, "", url);

describe("the batch envelope", () => {
  it("writes the gateway's wire format exactly: app, page, browser and sdk once, then the events", async () => {
    clientHints([
      { brand: "Chromium", version: "126" },
      { brand: "Not/A)Brand", version: "8" },
      { brand: "Google Chrome", version: "126" },
    ]);
    vi.spyOn(navigator, "language", "get").mockReturnValue("de-DE");
    go("/checkout?card=4111111111111111#step-2");
    vi.setSystemTime(new Date("2025-01-15T10:30:45.123Z"));
    try {
      const log = logger({ app: { name: "shop", version: "1.4.2", environment: "production" }, captureErrors: false });
      log.info("User clicked pay", { action: "button_click" });
      log.error("Payment failed", new TypeError("x is undefined"));
      await log.flush();
      const [request] = requests();
      const body = bodyOf(request!);
      expect(Object.keys(body)).toEqual(["app", "page", "browser", "sdk", "events"]);
      expect({ ...body, events: undefined }).toEqual({
        app: { name: "shop", version: "1.4.2", environment: "production" },
        page: { url: `${location.origin}/checkout` },
        browser: {
          language: "de-DE",
          brands: [
            { brand: "Chromium", version: "126" },
            { brand: "Google Chrome", version: "126" },
          ],
          platform: "macOS",
          mobile: false,
        },
        sdk: { name: "@client-telemetry/browser", version: pkg.version },
        events: undefined,
      });
      expect(body.events).toHaveLength(2);
      expect(body.events[0]).toEqual({
        level: "info",
        scope: "checkout-form",
        sessionId: log.sessionId,
        message: "User clicked pay",
        timestamp: "2025-01-15T10:30:45.123Z",
        context: { action: "button_click" },
      });
      expect(Object.keys(body.events[1])).toEqual(["level", "scope", "sessionId", "message", "timestamp", "exception"]);
      expect(body.events[1].exception).toMatchObject({ type: "TypeError", message: "x is undefined" });
      // Nothing of the envelope is repeated in an event.
      expect(request!.body.match(/"url"/g)).toHaveLength(1);
    } finally {
      withoutClientHints();
    }
  });

  it("leaves out what it does not know: no app, no client hints", async () => {
    const log = logger();
    log.info("x");
    await log.flush();
    const body = bodyOf(requests()[0]!);
    expect(Object.keys(body)).toEqual(["page", "browser", "sdk", "events"]);
    expect(body.browser).toEqual({ language: navigator.language });
  });

  it("takes the app from NEXT_PUBLIC_CLIENT_TELEMETRY_APP_*, field by field under the options", async () => {
    vi.stubEnv("NEXT_PUBLIC_CLIENT_TELEMETRY_APP_NAME", "shop");
    vi.stubEnv("NEXT_PUBLIC_CLIENT_TELEMETRY_APP_VERSION", "1.4.2");
    vi.stubEnv("NEXT_PUBLIC_CLIENT_TELEMETRY_APP_ENVIRONMENT", "staging");
    const log = logger({ app: { version: "1.4.3-rc.1" } });
    log.info("x");
    await log.flush();
    expect(bodyOf(requests()[0]!).app).toEqual({ name: "shop", version: "1.4.3-rc.1", environment: "staging" });
  });

  it("sends the page URL without query string and fragment, or with its query when asked", async () => {
    go("/orders/42?token=secret&email=a%40b.c#details");
    const plain = logger();
    plain.info("plain");
    await plain.flush();
    setEndpoint(`${endpoint}-kept`);
    const kept = logger({ keepQuery: true });
    kept.info("kept");
    await kept.flush();
    expect(bodyOf(requests()[0]!).page).toEqual({ url: `${location.origin}/orders/42?token=secret&email=a%40b.c` });
    setEndpoint(endpoint.replace(/-kept$/, ""));
    expect(bodyOf(requests()[0]!).page).toEqual({ url: `${location.origin}/orders/42` });
  });

  it("sends the events of a single-page app in batches by the page they were logged on", async () => {
    const log = logger();
    go("/cart");
    log.info("on the cart");
    log.info("still on the cart");
    go("/checkout?step=1");
    log.info("on checkout");
    go("/checkout?step=2"); // another query: the same page
    log.info("on checkout again");
    await log.flush();
    expect(requests().map((r) => [bodyOf(r).page.url.replace(location.origin, ""), eventsOf(r).map((e) => e.message)])).toEqual([
      ["/cart", ["on the cart", "still on the cart"]],
      ["/checkout", ["on checkout", "on checkout again"]],
    ]);
  });

  it("keeps the events of loggers naming different apps in different requests", async () => {
    const shop = logger({ app: { name: "shop" } });
    const widget = logger({ app: { name: "chat-widget" } });
    shop.info("a");
    widget.info("b");
    shop.info("c");
    await shop.flush();
    expect(requests().map((r) => [bodyOf(r).app.name, eventsOf(r).map((e) => e.message)])).toEqual([
      ["shop", ["a"]],
      ["chat-widget", ["b"]],
      ["shop", ["c"]],
    ]);
  });

  it("names the SDK with this package's version", async () => {
    const log = client.createLogger({ scope: "s", endpoint });
    log.info("x");
    await log.flush();
    expect(bodyOf(requests()[0]!).sdk).toEqual({ name: pkg.name, version: pkg.version });
  });
});
