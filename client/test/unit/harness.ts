// What every unit test drives: a fresh copy of the client (module state included), fake timers,
// and a stubbed fetch/sendBeacon that records every request. `useHarness()` installs it per test.
import { afterEach, beforeEach, expect, vi } from "vitest";
import type * as Client from "../../src/index";
import type { LoggerOptions, TelemetryEvent } from "../../src/index";

// Every request the client makes, in order, whichever way it went.
export interface Sent {
  via: "fetch" | "beacon";
  url: string;
  body: string;
  init?: RequestInit;
}

export let client: typeof Client;
export let sent: Sent[];
export let responses: Array<() => Promise<Response>>; // answers for the next fetches; then 204
export let endpoint: string;
let n = 0;

export const setEndpoint = (url: string) => void (endpoint = url);
export const answer = (status: number, headers: Record<string, string> = {}) => () =>
  Promise.resolve(new Response(status === 204 ? null : "{}", { status, headers }));
export const networkError = () => Promise.reject(new TypeError("Failed to fetch"));

/** The endpoint a request went to, and the ids in its query string. */
export const target = (s: Sent) => s.url.split("?")[0];
export const param = (s: Sent, name: string) => new URL(s.url, "https://page.test").searchParams.get(name);
/** Requests to this test's endpoint (queues of earlier tests still listen on the shared window). */
export const requests = () => sent.filter((s) => target(s) === endpoint);
export const bodyOf = (s: Sent) => JSON.parse(s.body);
export const eventsOf = (s: Sent): TelemetryEvent[] => bodyOf(s).events;
export const messages = (s: Sent) => eventsOf(s).map((e) => e.message);
/** Every event sent to this test's endpoint, in order. */
export const allEvents = () => requests().flatMap(eventsOf);
export const bytes = (s: string) => new TextEncoder().encode(s).length;

export function logger(options: Partial<LoggerOptions> = {}) {
  return client.createLogger({ scope: "checkout-form", endpoint, ...options });
}
export function logMany(log: Client.Logger, count: number, from = 0) {
  for (let i = from; i < from + count; i++) log.info(`event ${i}`, { i });
}
export function setVisibility(state: DocumentVisibilityState) {
  Object.defineProperty(document, "visibilityState", { value: state, configurable: true });
  document.dispatchEvent(new Event("visibilitychange"));
}
export const pagehide = () => window.dispatchEvent(new Event("pagehide"));
/** Lets pending responses settle without moving the clock. */
export const settle = () => vi.advanceTimersByTimeAsync(0);

let listeners: [string, EventListenerOrEventListenerObject][] = [];

export function useHarness() {
  beforeEach(async () => {
    // Each test's client (a fresh module) listens on the one shared window: forget them after it.
    const add = window.addEventListener.bind(window);
    vi.spyOn(window, "addEventListener").mockImplementation((type: string, listener: EventListenerOrEventListenerObject) => {
      listeners.push([type, listener]);
      add(type, listener);
    });
    vi.useFakeTimers();
    vi.resetModules();
    sessionStorage.clear();
    client = await import("../../src/index");
    endpoint = `https://gateway.test/api/client-telemetry/${++n}`;
    sent = [];
    responses = [];
    vi.stubGlobal(
      "fetch",
      vi.fn((url: string, init: RequestInit) => {
        sent.push({ via: "fetch", url, body: init.body as string, init });
        return (responses.shift() ?? answer(204))();
      }),
    );
    vi.spyOn(navigator, "sendBeacon").mockImplementation((url, data) => {
      sent.push({ via: "beacon", url: String(url), body: data as string });
      return true;
    });
    for (const method of ["log", "info", "warn", "error", "debug"] as const) vi.spyOn(console, method);
    Object.defineProperty(document, "visibilityState", { value: "visible", configurable: true });
  });

  afterEach(() => {
    for (const [type, listener] of listeners.splice(0)) window.removeEventListener(type, listener);
    Reflect.deleteProperty(window, Symbol.for("client-telemetry.capturing"));
    // No console output, ever, in any test.
    for (const method of ["log", "info", "warn", "error", "debug"] as const) expect(console[method]).not.toHaveBeenCalled();
    vi.clearAllTimers();
    vi.useRealTimers();
    vi.unstubAllGlobals();
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });
}
