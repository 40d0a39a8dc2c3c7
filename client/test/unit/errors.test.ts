// Errors: the page's uncaught errors and rejections captured, `error()` keeping an Error's stack,
// Errors inside a context, bursts collapsed, and no feedback loop.
import { describe, expect, it, vi } from "vitest";
import type { TelemetryEvent } from "../../src/index";
import { allEvents, client, endpoint, logger, useHarness } from "./harness";

useHarness();

function placeOrder(): never {
  throw new TypeError("x is undefined");
}
/** An Error with a real stack naming the function that threw. */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("did not throw");
}
/** What the browser dispatches for an uncaught exception. */
const uncaught = (error: unknown, extra: ErrorEventInit = {}) =>
  window.dispatchEvent(new ErrorEvent("error", { error, message: "Uncaught", ...extra }));
/** What the browser dispatches for a rejection nobody handled (happy-dom has no PromiseRejectionEvent). */
const unhandled = (reason: unknown) => window.dispatchEvent(Object.assign(new Event("unhandledrejection"), { reason }));
const flushed = async (log = logger({ captureErrors: false })) => (await log.flush(), allEvents());
const windowEvents = () => allEvents().filter((e) => e.scope === "window");

describe("uncaught errors and unhandled rejections", () => {
  it("sends an uncaught error as an error event with its type, message and stack", async () => {
    const log = logger();
    uncaught(thrownBy(placeOrder));
    const [event] = await flushed(log);
    expect(event).toMatchObject({
      level: "error",
      scope: "window",
      sessionId: log.sessionId,
      message: "Uncaught TypeError: x is undefined",
      exception: { type: "TypeError", message: "x is undefined" },
    });
    expect(event!.exception!.stacktrace).toMatch(/^TypeError: x is undefined\n\s+at placeOrder /);
  });

  it("sends an unhandled rejection the same way", async () => {
    const log = logger();
    unhandled(thrownBy(() => placeOrder()));
    const [event] = await flushed(log);
    expect(event).toMatchObject({
      level: "error",
      scope: "window",
      message: "Uncaught (in promise) TypeError: x is undefined",
      exception: { type: "TypeError", message: "x is undefined", stacktrace: expect.stringContaining("at placeOrder") },
    });
  });

  it("sends a rejection with something other than an Error as its text, typed by typeof", async () => {
    logger();
    unhandled("quota exceeded");
    unhandled({ code: 42 });
    unhandled(undefined);
    expect((await flushed()).map((e) => [e.message, e.exception])).toEqual([
      ["Uncaught (in promise) quota exceeded", { type: "string", message: "quota exceeded" }],
      ['Uncaught (in promise) {"code":42}', { type: "object", message: '{"code":42}' }],
      ["Uncaught (in promise) undefined", { type: "undefined", message: "undefined" }],
    ]);
  });

  it("sends a cross-origin script's error, which has no Error, with where it happened", async () => {
    logger();
    window.dispatchEvent(
      new ErrorEvent("error", { message: "Script error.", filename: "https://cdn.example/widget.js", lineno: 3, colno: 14 }),
    );
    expect((await flushed())[0]).toMatchObject({
      message: "Uncaught Error: Script error.",
      exception: { type: "Error", message: "Script error.", stacktrace: "    at https://cdn.example/widget.js:3:14" },
    });
  });

  it("is on by default and off with captureErrors: false", async () => {
    logger({ captureErrors: false });
    uncaught(new Error("not captured"));
    expect(await flushed()).toEqual([]);
    logger(); // the first logger with capture on installs it
    uncaught(new Error("captured"));
    expect((await flushed()).map((e) => e.message)).toEqual(["Uncaught Error: captured"]);
  });

  it("reports each error once, however many loggers the page has", async () => {
    logger({ scope: "a" });
    logger({ scope: "b" });
    logger({ scope: "c", endpoint: `${endpoint}-other` });
    uncaught(new Error("once"));
    await vi.advanceTimersByTimeAsync(2000);
    expect(windowEvents().map((e) => e.message)).toEqual(["Uncaught Error: once"]);
  });

  it("reports each error once when the page loads two copies of the client (bundle and script tag)", async () => {
    const bundled = logger({ scope: "bundled" });
    vi.resetModules();
    const copy = await import("../../src/index");
    const other = copy.createLogger({ scope: "script-tag", endpoint }); // a queue of its own
    uncaught(new Error("once"));
    await bundled.flush();
    await other.flush();
    expect(allEvents().map((e) => e.message)).toEqual(["Uncaught Error: once"]);
  });

  it("does not capture a resource that failed to load (an error event that is not an ErrorEvent)", async () => {
    logger();
    window.dispatchEvent(new Event("error"));
    expect(await flushed()).toEqual([]);
  });
});

describe("the exception of an Error", () => {
  it("appends the cause chain to the stack, each as 'Caused by:'", async () => {
    const root = thrownBy(placeOrder);
    const wrapped = new Error("checkout failed", { cause: new Error("payment failed", { cause: root }) });
    logger().error("checkout failed", wrapped);
    const { stacktrace } = (await flushed())[0]!.exception!;
    const parts = stacktrace!.split("\nCaused by: ");
    expect(parts.map((p) => p.split("\n")[0])).toEqual([
      "Error: checkout failed",
      "Error: payment failed",
      "TypeError: x is undefined",
    ]);
    expect(parts[2]).toMatch(/at placeOrder /);
  });

  it("bounds a cause chain that loops, and a stack that is huge", async () => {
    const a = new Error("a");
    const b = new Error("b", { cause: a });
    (a as { cause?: unknown }).cause = b;
    const huge = new Error("deep");
    huge.stack = `Error: deep\n${"    at recurse (https://shop.example/app.js:1:1)\n".repeat(2000)}`;
    const log = logger();
    log.error("loop", a);
    log.error("huge", huge);
    const [loop, big] = await flushed();
    expect(loop!.exception!.stacktrace!.split("Caused by:")).toHaveLength(6); // the error and 5 causes
    expect(big!.exception!.stacktrace!.length).toBe(8000);
  });

  it("adds the 'Type: message' line a Firefox or Safari stack lacks", async () => {
    const e = new RangeError("too deep");
    e.stack = "recurse@https://shop.example/app.js:1:1\n";
    logger().error("x", e);
    expect((await flushed())[0]!.exception!.stacktrace).toBe("RangeError: too deep\nrecurse@https://shop.example/app.js:1:1\n");
  });
});

describe("error(message, error, context)", () => {
  it("takes what a catch caught (unknown) and keeps the Error's stack", async () => {
    const log = logger();
    try {
      placeOrder();
    } catch (e) {
      log.error("Payment failed", e); // e: unknown, as TypeScript types a catch variable
    }
    const [event] = await flushed();
    expect(event).toMatchObject({ level: "error", scope: "checkout-form", message: "Payment failed" });
    expect(event!.exception).toMatchObject({ type: "TypeError", message: "x is undefined" });
    expect(event!.exception!.stacktrace).toContain("at placeOrder");
    expect(event!.context).toBeUndefined();
  });

  it("takes a context after the error, and a plain object in the error's place as the context", async () => {
    const log = logger();
    log.error("with both", new Error("boom"), { orderId: "o-1" });
    log.error("context only", { status: 502 });
    log.error("thrown string", "boom");
    log.error("bare");
    expect((await flushed()).map((e) => [e.message, e.exception?.message, e.context])).toEqual([
      ["with both", "boom", { orderId: "o-1" }],
      ["context only", undefined, { status: 502 }],
      ["thrown string", "boom", undefined],
      ["bare", undefined, undefined],
    ]);
  });

  it("accepts a context typed as an interface (no index signature needed)", async () => {
    interface OrderContext {
      orderId: string;
      total: number;
    }
    const context: OrderContext = { orderId: "o-1", total: 42 };
    const log = logger();
    log.info("ordered", context);
    log.warn("slow", context);
    log.error("failed", new Error("x"), context);
    expect((await flushed()).map((e) => e.context)).toEqual([context, context, context]);
  });

  it("sends an Error inside a context as type, message and stack, not as {}", async () => {
    const e = thrownBy(placeOrder) as Error;
    logger().info("caught", { error: e, nested: { errors: [new RangeError("r")] }, big: 10n });
    const context = (await flushed())[0]!.context!;
    expect(context.error).toEqual({ type: "TypeError", message: "x is undefined", stacktrace: e.stack });
    expect(context.nested).toEqual({ errors: [{ type: "RangeError", message: "r", stacktrace: expect.stringContaining("RangeError: r") }] });
    expect(context.big).toBe("10");
  });

  it("lets beforeSend see and scrub the exception", async () => {
    const log = logger({
      beforeSend: (event) => ({ ...event, exception: { ...event.exception!, message: event.exception!.message.replace(/\d+/g, "#") } }),
    });
    log.error("card", new Error("card 4111 declined"));
    expect((await flushed())[0]!.exception!.message).toBe("card # declined");
  });
});

describe("bursts", () => {
  it("sends identical errors that happen before the first has left as one event with a count", async () => {
    const log = logger();
    const e = thrownBy(placeOrder);
    for (let i = 0; i < 50; i++) uncaught(e);
    log.error("Payment failed", e);
    log.error("Payment failed", e);
    const events = await flushed(log);
    expect(events.map((x) => [x.scope, x.message, x.context?.["exception.count"]])).toEqual([
      ["window", "Uncaught TypeError: x is undefined", 50],
      ["checkout-form", "Payment failed", 2],
    ]);
  });

  it("keeps different errors apart, and starts counting again once the event has left", async () => {
    const log = logger();
    uncaught(new Error("a"));
    uncaught(new Error("b"));
    await log.flush();
    const a = new Error("same");
    uncaught(a);
    await log.flush();
    uncaught(a);
    uncaught(a);
    await log.flush();
    expect(allEvents().map((x) => [x.message, x.context?.["exception.count"]])).toEqual([
      ["Uncaught Error: a", undefined],
      ["Uncaught Error: b", undefined],
      ["Uncaught Error: same", undefined],
      ["Uncaught Error: same", 2],
    ]);
  });

  it("keeps a page that throws in a loop within the queue's bounds", async () => {
    const log = logger({ maxQueue: 100, batchSize: 100 });
    const tick = (message: string) => thrownBy(() => {
      throw new Error(message);
    });
    for (let i = 0; i < 5000; i++) uncaught(tick("tick")); // identical: one event
    expect(log.stats()).toEqual({ queued: 1, dropped: 0 });
    for (let i = 0; i < 5000; i++) uncaught(tick(`tick ${i}`)); // all different
    expect(log.stats().queued).toBeLessThanOrEqual(100);
    await log.flush();
    const events = allEvents();
    expect(events[0]!.context).toEqual({ "exception.count": 5000 });
    // What left: the batch in flight when the loop began (as much as 60 KiB holds), then the newest 100.
    expect(events.length).toBeLessThanOrEqual(200);
    expect(log.stats()).toEqual({ queued: 0, dropped: 5001 - events.length });
    expect(events.at(-1)!.message).toBe("Uncaught Error: tick 4999");
  });
});

describe("no feedback loop", () => {
  it("ignores errors raised while an error is being reported", async () => {
    const log = logger({
      beforeSend: (event: TelemetryEvent) => {
        if (event.scope === "window") uncaught(new Error("from inside the report"));
        return event;
      },
    });
    uncaught(new Error("first"));
    expect((await flushed(log)).map((e) => e.message)).toEqual(["Uncaught Error: first"]);
  });

  it("reports nothing of its own failures: a throwing fetch, sendBeacon or beforeSend", async () => {
    const watcher = client.createLogger({ scope: "watcher", endpoint: `${endpoint}-watcher` }); // captures
    const fails = () => {
      throw new Error("blew up");
    };
    vi.mocked(fetch).mockImplementation((url) => (String(url).startsWith(`${endpoint}?`) ? fails() : Promise.resolve(new Response(null, { status: 204 }))));
    vi.mocked(navigator.sendBeacon).mockImplementation(fails);
    const log = logger({ captureErrors: false });
    const hooked = logger({ captureErrors: false, beforeSend: fails });
    log.error("x", new Error("y"));
    hooked.error("z", new Error("w"));
    await log.flush();
    log.info("at unload");
    window.dispatchEvent(new Event("pagehide"));
    await vi.advanceTimersByTimeAsync(60_000);
    await watcher.flush();
    // Had any of these escaped as an uncaught error or rejection, the watcher would have sent it
    // (and Vitest would fail the test on an unhandled error).
    expect(vi.mocked(fetch).mock.calls.filter(([url]) => String(url).includes("-watcher"))).toEqual([]);
    expect(log.stats().dropped).toBeGreaterThan(0);
  });

  it("ignores errors whose file is the browser build itself (script tag)", async () => {
    vi.resetModules();
    const src = "https://telemetry.example/client-telemetry.js";
    Object.defineProperty(document, "currentScript", { value: { src }, configurable: true });
    try {
      await import("../../src/global"); // what the <script> tag runs
      const api = (globalThis as unknown as { ClientTelemetry: typeof client }).ClientTelemetry;
      const log = api.createLogger({ scope: "s", endpoint });
      uncaught(new Error("a bug in the client"), { filename: src });
      uncaught(new Error("the page's"), { filename: "https://shop.example/app.js" });
      await log.flush();
      expect(allEvents().map((e) => e.message)).toEqual(["Uncaught Error: the page's"]);
    } finally {
      delete (document as { currentScript?: unknown }).currentScript;
      delete (globalThis as { ClientTelemetry?: unknown }).ClientTelemetry;
    }
  });

  it("still captures the errors of a bundle the npm build is part of", async () => {
    vi.resetModules();
    const bundle = "https://shop.example/_next/static/chunks/app.js"; // the client runs inside it
    Object.defineProperty(document, "currentScript", { value: { src: bundle }, configurable: true });
    try {
      const bundled = await import("../../src/index");
      const log = bundled.createLogger({ scope: "s", endpoint });
      uncaught(new Error("the page's"), { filename: bundle });
      await log.flush();
      expect(allEvents().map((e) => e.message)).toEqual(["Uncaught Error: the page's"]);
    } finally {
      delete (document as { currentScript?: unknown }).currentScript;
    }
  });

  it("never throws into the page, whatever is thrown", async () => {
    logger();
    const hostile = new Proxy(
      {},
      {
        get() {
          throw new Error("trap");
        },
      },
    );
    const badError = Object.create(Error.prototype, {
      name: {
        get() {
          throw new Error("trap");
        },
      },
    });
    expect(() => {
      unhandled(hostile);
      uncaught(badError);
      unhandled(Object.create(null));
      logger().error("bad", badError);
      logger().info("bad", { e: badError });
    }).not.toThrow();
  });
});
