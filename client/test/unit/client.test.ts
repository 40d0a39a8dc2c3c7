// The transport: batching, leaving the page, request size, 429, retries, ids, bounds, settings.
import { describe, expect, it, vi } from "vitest";
import type * as Client from "../../src/index";
import {
  answer,
  bytes,
  client,
  endpoint,
  eventsOf,
  logger,
  logMany,
  messages,
  networkError,
  pagehide,
  param,
  requests,
  responses,
  sent,
  setEndpoint,
  settle,
  setVisibility,
  target,
  useHarness,
} from "./harness";

useHarness();

describe("batching", () => {
  it("sends nothing until the batch is full or the interval elapses", async () => {
    logMany(logger(), 19);
    await vi.advanceTimersByTimeAsync(1999);
    expect(requests()).toHaveLength(0);
  });

  it("sends exactly one request of 20 events when the 20th is logged", async () => {
    logMany(logger(), 20);
    expect(requests()).toHaveLength(1);
    expect(messages(requests()[0]!)).toEqual(Array.from({ length: 20 }, (_, i) => `event ${i}`));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(requests()).toHaveLength(1);
  });

  it("sends the pending events when the interval elapses", async () => {
    logMany(logger(), 5);
    await vi.advanceTimersByTimeAsync(2000);
    expect(requests()).toHaveLength(1);
    expect(eventsOf(requests()[0]!)).toHaveLength(5);
  });

  it("sends 25 events as 20 at once, then 5 after the interval", async () => {
    logMany(logger(), 25);
    await settle();
    expect(requests().map((r) => eventsOf(r).length)).toEqual([20]);
    await vi.advanceTimersByTimeAsync(2000);
    expect(requests().map((r) => eventsOf(r).length)).toEqual([20, 5]);
  });

  it("sends ordinary batches by plain fetch, text/plain string, no custom headers", async () => {
    logMany(logger(), 20);
    const [request] = requests();
    expect(request).toMatchObject({ via: "fetch", init: { method: "POST" } });
    expect(typeof request!.body).toBe("string"); // a string body goes as text/plain: no preflight
    expect(request!.init!.headers).toBeUndefined();
    expect(request!.init!.keepalive).toBeFalsy();
    expect(navigator.sendBeacon).not.toHaveBeenCalled();
  });

  it("writes each event in the gateway's wire format", async () => {
    vi.setSystemTime(new Date("2025-01-15T10:30:45.123Z"));
    const log = logger({ requestId: "request-xyz789" });
    log.warn("User clicked pay", { action: "button_click" });
    logger({ scope: "bare" }).error("no context");
    await log.flush();
    const { events } = JSON.parse(requests()[0]!.body);
    expect(events[0]).toEqual({
      level: "warn",
      scope: "checkout-form",
      sessionId: log.sessionId,
      message: "User clicked pay",
      timestamp: "2025-01-15T10:30:45.123Z",
      requestId: "request-xyz789",
      context: { action: "button_click" },
    });
    expect(Object.keys(events[1])).toEqual(["level", "scope", "sessionId", "message", "timestamp"]);
  });
});

describe("leaving the page", () => {
  it("sends pending events by sendBeacon, synchronously, when the tab is hidden", () => {
    logMany(logger(), 3);
    setVisibility("hidden");
    expect(requests()).toHaveLength(1); // no await: the page may be gone after this task
    expect(requests()[0]).toMatchObject({ via: "beacon" });
    expect(typeof requests()[0]!.body).toBe("string"); // text/plain: CORS-safelisted, no preflight
    expect(messages(requests()[0]!)).toEqual(["event 0", "event 1", "event 2"]);
  });

  it("sends pending events by sendBeacon, synchronously, on pagehide", () => {
    logMany(logger(), 3);
    pagehide();
    expect(requests().map((r) => r.via)).toEqual(["beacon"]);
    expect(eventsOf(requests()[0]!)).toHaveLength(3);
  });

  it("sends nothing when the tab becomes visible", async () => {
    logMany(logger(), 3);
    setVisibility("visible");
    await vi.advanceTimersByTimeAsync(1999);
    expect(requests()).toHaveLength(0);
  });

  it("falls back to a keepalive fetch with the same body when sendBeacon refuses", () => {
    vi.mocked(navigator.sendBeacon).mockImplementation((url, data) => {
      sent.push({ via: "beacon", url: String(url), body: data as string });
      return false; // e.g. the 64 KiB quota is full
    });
    logMany(logger(), 3);
    pagehide();
    expect(requests().map((r) => r.via)).toEqual(["beacon", "fetch"]);
    expect(requests()[1]!.body).toBe(requests()[0]!.body);
    expect(requests()[1]!.init).toMatchObject({ method: "POST", keepalive: true });
  });

  it("falls back to a keepalive fetch when there is no sendBeacon", () => {
    Object.defineProperty(navigator, "sendBeacon", { value: undefined, configurable: true });
    try {
      logMany(logger(), 3);
      pagehide();
      expect(requests().map((r) => [r.via, r.init?.keepalive])).toEqual([["fetch", true]]);
    } finally {
      delete (navigator as { sendBeacon?: unknown }).sendBeacon; // back to the prototype's
    }
  });
});

describe("idempotent flush", () => {
  it("sends once when both hidden and pagehide fire, as they do on navigation", async () => {
    logMany(logger(), 3);
    setVisibility("hidden");
    pagehide();
    await logger().flush();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(requests()).toHaveLength(1);
    expect(eventsOf(requests()[0]!)).toHaveLength(3);
  });

  it("sends once when flush() is called twice at the same time", async () => {
    const log = logger();
    logMany(log, 3);
    await Promise.all([log.flush(), log.flush()]);
    await log.flush();
    expect(requests()).toHaveLength(1);
  });

  it("does not resend a batch in flight when the page is hidden", async () => {
    let respond!: (r: Response) => void;
    responses.push(() => new Promise((resolve) => (respond = resolve)));
    const log = logger();
    logMany(log, 20); // in flight, unanswered
    log.info("pending");
    setVisibility("hidden");
    respond(new Response(null, { status: 204 }));
    await settle();
    expect(requests().map((r) => [r.via, eventsOf(r).length])).toEqual([
      ["fetch", 20],
      ["beacon", 1],
    ]);
  });
});

describe("request size", () => {
  // "€" is 1 UTF-16 unit but 3 UTF-8 bytes: counting string length would overshoot threefold.
  const big = "€".repeat(4000);

  it("splits a batch so that every request stays under 64 KiB in UTF-8 bytes", async () => {
    const log = logger();
    logMany({ ...log, info: (m: string) => log.info(`${m} ${big}`) } as Client.Logger, 20);
    await settle();
    await log.flush();
    expect(requests().length).toBeGreaterThan(3);
    for (const r of requests()) expect(bytes(r.body)).toBeLessThan(64 * 1024);
    const all = requests().flatMap(messages);
    expect(all).toEqual(Array.from({ length: 20 }, (_, i) => `event ${i} ${big}`));
  });

  it("splits the unload beacons the same way", () => {
    const log = logger();
    for (let i = 0; i < 10; i++) log.info(`event ${i} ${big}`);
    pagehide();
    expect(requests().length).toBeGreaterThan(1);
    for (const r of requests()) expect([r.via, bytes(r.body) < 64 * 1024]).toEqual(["beacon", true]);
    expect(requests().flatMap(eventsOf)).toHaveLength(10);
  });

  it("drops and counts an event that no request could carry", async () => {
    const log = logger();
    log.info("huge", { blob: "x".repeat(64 * 1024) });
    log.info("fine");
    await log.flush();
    expect(requests().flatMap(messages)).toEqual(["fine"]);
    expect(log.stats()).toEqual({ queued: 0, dropped: 1 });
  });
});

describe("429 Too Many Requests", () => {
  it("stops sending until Retry-After has passed, keeps the queue, then resumes", async () => {
    responses.push(answer(429, { "Retry-After": "5" }));
    const log = logger();
    logMany(log, 20);
    await settle();
    expect(requests()).toHaveLength(1);

    logMany(log, 20, 20); // a full batch again
    setVisibility("hidden"); // and the unload path
    await log.flush(); // and an explicit flush
    await vi.advanceTimersByTimeAsync(4999);
    expect(requests()).toHaveLength(1);
    expect(log.stats().queued).toBe(40);

    await vi.advanceTimersByTimeAsync(1);
    expect(requests()).toHaveLength(3);
    expect(messages(requests()[1]!)).toEqual(messages(requests()[0]!)); // the refused batch, first
    expect(requests().slice(1).flatMap(messages)).toEqual(Array.from({ length: 40 }, (_, i) => `event ${i}`));
    expect(log.stats()).toEqual({ queued: 0, dropped: 0 });
  });

  it("understands Retry-After as an HTTP date", async () => {
    vi.setSystemTime(new Date("2025-01-15T10:00:00Z"));
    responses.push(answer(429, { "Retry-After": "Wed, 15 Jan 2025 10:00:30 GMT" }));
    const log = logger();
    logMany(log, 20);
    await vi.advanceTimersByTimeAsync(29_999);
    expect(requests()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(requests()).toHaveLength(2);
  });

  it("waits at least a second even when told Retry-After: 0", async () => {
    for (let i = 0; i < 10; i++) responses.push(answer(429, { "Retry-After": "0" }));
    logMany(logger(), 20);
    await vi.advanceTimersByTimeAsync(999);
    expect(requests()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(requests()).toHaveLength(2);
  });
});

describe("network errors and 5xx", () => {
  it("retries a bounded number of times with exponential backoff, then drops and counts", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0.999_999); // the top of the jitter range
    responses.push(networkError, answer(503), networkError, answer(500));
    const log = logger({ maxRetries: 3 });
    logMany(log, 20);
    const attemptsAt = async (ms: number) => (await vi.advanceTimersByTimeAsync(ms), requests().length);
    expect(await attemptsAt(999)).toBe(1);
    expect(await attemptsAt(1)).toBe(2); // +1 s
    expect(await attemptsAt(1999)).toBe(2);
    expect(await attemptsAt(1)).toBe(3); // +2 s
    expect(await attemptsAt(3999)).toBe(3);
    expect(await attemptsAt(1)).toBe(4); // +4 s, the last retry
    expect(await attemptsAt(120_000)).toBe(4);
    expect(new Set(requests().map((r) => r.body)).size).toBe(1);
    expect(log.stats()).toEqual({ queued: 0, dropped: 20 });
  });

  it("delivers the batch once the gateway recovers", async () => {
    responses.push(answer(502));
    const log = logger();
    logMany(log, 20);
    await vi.advanceTimersByTimeAsync(1000);
    expect(requests()).toHaveLength(2);
    expect(requests()[1]!.body).toBe(requests()[0]!.body);
    expect(log.stats()).toEqual({ queued: 0, dropped: 0 });
  });

  it.each([400, 413])("does not retry a batch the gateway refused with %i", async (status) => {
    responses.push(answer(status));
    const log = logger();
    logMany(log, 20);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(requests()).toHaveLength(1);
    expect(log.stats()).toEqual({ queued: 0, dropped: 20 });
  });
});

describe("session and batch ids", () => {
  it("names the page's session and each batch in the query string, where sendBeacon can send them", async () => {
    const log = logger();
    logMany(log, 40);
    await settle();
    pagehide();
    logMany(log, 3);
    pagehide();
    expect(requests().map((r) => r.via)).toEqual(["fetch", "fetch", "beacon"]);
    expect(requests().map((r) => param(r, "session"))).toEqual([log.sessionId, log.sessionId, log.sessionId]);
    const batches = requests().map((r) => param(r, "batch"));
    expect(new Set(batches).size).toBe(3);
    for (const id of batches) expect(id).toMatch(/^[0-9a-f-]{32,36}$/);
  });

  it("keeps an endpoint's own query string", async () => {
    setEndpoint(`${endpoint}?key=k-123`);
    const sentTo = () => sent.filter((s) => s.url.startsWith(endpoint));
    logMany(logger(), 20);
    expect(sentTo()).toHaveLength(1);
    expect([param(sentTo()[0]!, "key"), param(sentTo()[0]!, "session")]).toEqual(["k-123", expect.any(String)]);
  });

  it("resends a failed batch whole and under the same id, even when more events arrived", async () => {
    responses.push(networkError, answer(429, { "Retry-After": "2" }));
    const log = logger();
    logMany(log, 5);
    await log.flush();
    logMany(log, 20, 5);
    await vi.advanceTimersByTimeAsync(1000);
    await vi.advanceTimersByTimeAsync(2000);
    const [first, retry, third, next] = requests();
    expect(requests()).toHaveLength(4);
    expect([retry!.body, third!.body]).toEqual([first!.body, first!.body]);
    expect([param(retry!, "batch"), param(third!, "batch")]).toEqual([param(first!, "batch"), param(first!, "batch")]);
    expect(messages(next!)).toEqual(Array.from({ length: 20 }, (_, i) => `event ${i + 5}`));
    expect(param(next!, "batch")).not.toEqual(param(first!, "batch"));
  });
});

describe("bounded memory", () => {
  it("keeps at most maxQueue events, dropping the oldest and counting them", async () => {
    const log = logger({ maxQueue: 5, batchSize: 100 });
    logMany(log, 8);
    expect(log.stats()).toEqual({ queued: 5, dropped: 3 });
    await log.flush();
    expect(messages(requests()[0]!)).toEqual(["event 3", "event 4", "event 5", "event 6", "event 7"]);
  });

  it("stays bounded while a 429 holds the queue", async () => {
    responses.push(answer(429, { "Retry-After": "60" }));
    const log = logger({ maxQueue: 30 });
    logMany(log, 100);
    await settle();
    expect(log.stats()).toEqual({ queued: 30, dropped: 70 });
  });
});

describe("one queue per endpoint", () => {
  it("batches the events of every logger on an endpoint together", async () => {
    const a = logger({ scope: "a" });
    const b = logger({ scope: "b", batchSize: 5 }); // the queue exists: its settings stay
    for (let i = 0; i < 10; i++) {
      a.info(`a${i}`);
      b.info(`b${i}`);
    }
    expect(requests()).toHaveLength(1);
    const events = eventsOf(requests()[0]!);
    expect(events).toHaveLength(20);
    expect(new Set(events.map((e) => `${e.scope} ${e.sessionId}`))).toEqual(
      new Set([`a ${a.sessionId}`, `b ${b.sessionId}`]),
    );
  });

  it("keeps another endpoint's events apart", async () => {
    const other = `${endpoint}-other`;
    logger().info("here");
    logger({ endpoint: other }).info("there");
    await vi.advanceTimersByTimeAsync(2000);
    expect(sent.map((s) => [target(s), messages(s)])).toEqual([
      [endpoint, ["here"]],
      [other, ["there"]],
    ]);
  });
});

describe("configuration", () => {
  it("defaults to /api/client-telemetry, batches of 20, a 2 s interval", async () => {
    setEndpoint("/api/client-telemetry");
    const log = client.createLogger({ scope: "s" });
    logMany(log, 19);
    await vi.advanceTimersByTimeAsync(1999);
    expect(requests()).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    log.info("next");
    logMany(log, 19);
    expect(requests().map((r) => eventsOf(r).length)).toEqual([19, 20]);
  });

  it("takes its defaults from NEXT_PUBLIC_CLIENT_TELEMETRY_*", async () => {
    setEndpoint("/from-env");
    vi.stubEnv("NEXT_PUBLIC_CLIENT_TELEMETRY_ENDPOINT", endpoint);
    vi.stubEnv("NEXT_PUBLIC_CLIENT_TELEMETRY_BATCH_SIZE", "3");
    vi.stubEnv("NEXT_PUBLIC_CLIENT_TELEMETRY_FLUSH_INTERVAL_MS", "500");
    const log = client.createLogger({ scope: "s" });
    logMany(log, 4);
    expect(requests().map((r) => eventsOf(r).length)).toEqual([3]);
    await vi.advanceTimersByTimeAsync(500);
    expect(requests().map((r) => eventsOf(r).length)).toEqual([3, 1]);
  });

  it("lets explicit options win over the environment", () => {
    vi.stubEnv("NEXT_PUBLIC_CLIENT_TELEMETRY_ENDPOINT", "/from-env");
    vi.stubEnv("NEXT_PUBLIC_CLIENT_TELEMETRY_BATCH_SIZE", "3");
    logMany(logger({ batchSize: 4 }), 4);
    expect(requests().map((r) => eventsOf(r).length)).toEqual([4]);
  });

  it("ignores invalid sizes", async () => {
    logMany(logger({ batchSize: 0, flushIntervalMs: Number.NaN }), 20);
    expect(requests().map((r) => eventsOf(r).length)).toEqual([20]);
  });
});

describe("beforeSend and sampling", () => {
  it("lets beforeSend scrub an event or drop it", async () => {
    const log = logger({
      beforeSend: (e) =>
        e.message === "secret" ? null : { ...e, context: { ...e.context, email: "[redacted]" } },
    });
    log.info("secret", { email: "a@b.c" });
    log.info("kept", { email: "a@b.c", plan: "pro" });
    await log.flush();
    expect(eventsOf(requests()[0]!).map((e) => [e.message, e.context])).toEqual([
      ["kept", { email: "[redacted]", plan: "pro" }],
    ]);
    expect(log.stats().dropped).toBe(0); // dropping on purpose is not a loss
  });

  it("samples whole loggers (sessions)", async () => {
    const random = vi.spyOn(Math, "random");
    random.mockReturnValue(0.7);
    const out = logger({ scope: "out", sampleRate: 0.5 });
    random.mockReturnValue(0.3);
    const kept = logger({ scope: "in", sampleRate: 0.5 });
    random.mockRestore();
    logMany(out, 5);
    logMany(kept, 5);
    await kept.flush();
    expect(requests().flatMap(eventsOf).map((e) => e.scope)).toEqual(Array(5).fill("in"));
  });
});

describe("never breaks the page", () => {
  it("swallows a throwing fetch, a circular context and a throwing beforeSend", async () => {
    vi.mocked(fetch).mockImplementation(() => {
      throw new Error("fetch blew up");
    });
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const log = logger();
    const throwing = logger({
      beforeSend: () => {
        throw new Error("hook blew up");
      },
    });
    expect(() => {
      log.info("circular", circular);
      throwing.info("hook");
      logMany(log, 20);
    }).not.toThrow();
    await expect(log.flush()).resolves.toBeUndefined();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(vi.mocked(fetch).mock.calls.length).toBeLessThanOrEqual(4); // bounded retries, no loop
  });

  it("does nothing outside a browser", async () => {
    vi.stubGlobal("document", undefined);
    const log = logger();
    logMany(log, 20);
    await log.flush();
    expect(sent).toHaveLength(0);
    expect(log.stats()).toEqual({ queued: 0, dropped: 0 });
  });
});
