// The session: one id per tab and origin in sessionStorage, shared by every logger, renewed after
// inactivity or its maximum age, and the id the gateway's per-session limit sees.
import { describe, expect, it, vi } from "vitest";
import { allEvents, client, endpoint, logger, networkError, param, requests, responses, settle, useHarness } from "./harness";

useHarness();

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const MINUTE = 60_000;

/** A same-tab navigation: the page's modules start over; sessionStorage stays. */
async function navigate() {
  vi.resetModules();
  return await import("../../src/index");
}

describe("one session per tab", () => {
  it("gives every logger of the page the same random id, whatever its endpoint", () => {
    const a = logger().sessionId;
    expect(a).toMatch(UUID);
    expect(logger({ scope: "other" }).sessionId).toBe(a);
    expect(logger({ endpoint: `${endpoint}-other` }).sessionId).toBe(a);
  });

  it("keeps it across a reload or a same-tab navigation, in sessionStorage", async () => {
    const before = logger().sessionId;
    expect(JSON.parse(sessionStorage.getItem("client-telemetry.session")!)).toMatchObject({ id: before });
    const next = await navigate();
    const log = next.createLogger({ scope: "next-page", endpoint });
    expect(log.sessionId).toBe(before);
    log.info("on the next page");
    await log.flush();
    expect(allEvents()[0]!.sessionId).toBe(before);
  });

  it("starts a new one in another tab (another sessionStorage)", async () => {
    const before = logger().sessionId;
    sessionStorage.clear(); // what a new tab starts with
    expect((await navigate()).createLogger({ scope: "s", endpoint }).sessionId).not.toBe(before);
  });

  it("sends the id in every event's sessionId and in each request's ?session=", async () => {
    const log = logger();
    log.info("a");
    logger({ scope: "b" }).warn("b");
    await log.flush();
    const [request] = requests();
    expect(allEvents().map((e) => e.sessionId)).toEqual([log.sessionId, log.sessionId]);
    expect(param(request!, "session")).toBe(log.sessionId);
  });
});

describe("renewal", () => {
  it("renews after 30 minutes without an event, not before", () => {
    const log = logger();
    const first = log.sessionId;
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(29 * MINUTE);
      log.info("still here"); // activity: 4 h 50 min in all would pass, but the max is 4 h
      if (i < 8) expect(log.sessionId).toBe(first);
    }
    const second = logger().sessionId;
    expect(second).not.toBe(first); // 290 minutes > 4 h in all
    vi.advanceTimersByTime(30 * MINUTE);
    expect(log.sessionId).toBe(second); // exactly 30 minutes idle: still the same
    vi.advanceTimersByTime(1);
    expect(log.sessionId).not.toBe(second);
  });

  it("renews after 4 hours in all, however active", () => {
    const log = logger();
    const first = log.sessionId;
    for (let t = 0; t <= 240; t += 10) { // 250 minutes, an event every 10
      log.info("active");
      vi.advanceTimersByTime(10 * MINUTE);
    }
    expect(log.sessionId).not.toBe(first);
  });

  it("does not count reading the id as activity", () => {
    const log = logger();
    const first = log.sessionId;
    for (let i = 0; i < 3; i++) {
      vi.advanceTimersByTime(20 * MINUTE);
      void log.sessionId;
    }
    expect(log.sessionId).not.toBe(first);
  });

  it("takes other timeouts as options", () => {
    const log = logger({ sessionIdleTimeoutMs: MINUTE, sessionMaxDurationMs: 3 * MINUTE });
    const first = log.sessionId;
    vi.advanceTimersByTime(MINUTE + 1);
    const second = log.sessionId;
    expect(second).not.toBe(first);
    for (let i = 0; i < 4; i++) {
      log.info("active"); // 200 s in all, never idle for a minute
      vi.advanceTimersByTime(50_000);
    }
    expect(log.sessionId).not.toBe(second);
  });

  it("sends a renewed id with new batches, and the old one with a retry of an old batch", async () => {
    responses.push(networkError);
    const log = logger();
    const first = log.sessionId;
    log.info("before");
    await log.flush(); // fails: retried after about a second
    vi.setSystemTime(Date.now() + 31 * MINUTE);
    log.info("after");
    await vi.advanceTimersByTimeAsync(1000);
    await log.flush();
    const second = log.sessionId;
    expect(second).not.toBe(first);
    expect(requests().map((r) => [param(r, "session"), JSON.parse(r.body).events.map((e: { sessionId: string }) => e.sessionId)])).toEqual([
      [first, [first]],
      [first, [first]],
      [second, [second]],
    ]);
  });

  it("starts a new session when the stored one is damaged", () => {
    sessionStorage.setItem("client-telemetry.session", '{"id":"x","start":"soon"}');
    expect(logger().sessionId).toMatch(UUID);
    sessionStorage.setItem("client-telemetry.session", "not json");
    expect(logger().sessionId).toMatch(UUID);
  });
});

describe("without sessionStorage", () => {
  it("keeps one id for the page when storage throws (disabled, sandboxed frame)", async () => {
    vi.spyOn(Storage.prototype, "getItem").mockImplementation(() => {
      throw new DOMException("denied", "SecurityError");
    });
    vi.spyOn(Storage.prototype, "setItem").mockImplementation(() => {
      throw new DOMException("denied", "SecurityError");
    });
    const log = logger();
    expect(log.sessionId).toMatch(UUID);
    expect(logger({ scope: "b" }).sessionId).toBe(log.sessionId);
    log.info("works");
    await log.flush();
    expect(allEvents()[0]!.sessionId).toBe(log.sessionId);
  });
});

describe("server-side rendering", () => {
  it("has an empty session id and sends nothing outside a browser, so a server render shows no id", async () => {
    vi.stubGlobal("document", undefined);
    const log = client.createLogger({ scope: "ssr", endpoint });
    expect(log.sessionId).toBe("");
    log.error("on the server", new Error("x"));
    await log.flush();
    await settle();
    expect(requests()).toEqual([]);
    expect(sessionStorage.length).toBe(0);
  });
});
