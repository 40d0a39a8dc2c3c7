/** The limit a page may have in flight with `sendBeacon`/`keepalive` is 64 KiB; we stay under it. */
const MAX_BODY_BYTES = 60 * 1024;
const TAIL = "]}";
const MIN_HOLD_MS = 1000; // even a gateway answering "Retry-After: 0" in a loop is not hammered
const MAX_HOLD_MS = 3_600_000; // setTimeout overflows past 2^31 ms; an hour then ask again
const DEFAULT_RETRY_AFTER_MS = 60_000; // a 429 without a usable Retry-After: the gateway's window

export interface QueueOptions {
  endpoint: string;
  /** The page's session id, for the gateway's per-session limit. */
  session: () => string;
  batchSize: number;
  flushIntervalMs: number;
  maxQueue: number;
  maxRetries: number;
}

/** One serialised event: serialised when logged, so later mutation of its context changes nothing. */
export interface Entry {
  json: string;
  bytes: number;
  /** The body up to its events: `{"app":…,"page":…,"events":[`; a batch only holds events with the same. */
  head: string;
  /** `session=…&batch=…` of the batch it was first sent in: a retry resends that batch whole, as it was. */
  batch?: string;
}

export const uuid = (): string => {
  try {
    return crypto.randomUUID(); // secure contexts only (https, localhost)
  } catch {
    const hex = (n: number) => n.toString(16).padStart(2, "0");
    try {
      return Array.from(crypto.getRandomValues(new Uint8Array(16)), hex).join("");
    } catch {
      return Math.random().toString(36).slice(2) + Date.now().toString(36);
    }
  }
};

const encoder = new TextEncoder();
const utf8 = (s: string) => encoder.encode(s).length;
const body = (batch: Entry[]) => batch[0]!.head + batch.map((e) => e.json).join(",") + TAIL;

/**
 * The batching queue of one endpoint, shared by every logger that sends there.
 * At most one ordinary request is in flight, so a struggling gateway sees one client, not a burst.
 */
export class Queue {
  private entries: Entry[] = [];
  dropped = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private sending: Promise<void> | undefined;
  private sendAll = false;
  private holdUntil = 0; // nothing is sent before: a Retry-After or a retry backoff
  private rateLimited = false; // the hold is a 429: even the unload path waits
  private failures = 0; // consecutive failed attempts of the batch at the head of the queue
  private proof: string | null | undefined; // a solved challenge or the token it earned (docs/security.md)

  constructor(private readonly o: QueueOptions) {
    // Both fire when the page is left; the second finds the queue empty. Never `unload`: it
    // disables the back/forward cache.
    window.addEventListener("pagehide", () => this.unload());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") this.unload();
    });
  }

  get size(): number {
    return this.entries.length;
  }

  push(json: string, head: string): Entry | undefined {
    const entry: Entry = { json, bytes: utf8(json), head };
    // A lone event over the request limit could never be sent (the gateway refuses far smaller).
    if (entry.bytes + utf8(head) + TAIL.length > MAX_BODY_BYTES) {
      this.dropped++;
      return;
    }
    this.entries.push(entry);
    this.trim();
    if (this.entries.length >= this.o.batchSize) void this.run();
    else this.schedule(this.o.flushIntervalMs);
    return entry;
  }

  /** Rewrites an event that has not left yet (a repeated error's count); false once it has. */
  update(entry: Entry, json: string): boolean {
    if (entry.batch || !this.entries.includes(entry)) return false;
    entry.json = json;
    entry.bytes = utf8(json);
    return true;
  }

  /** Sends everything pending (unless the gateway asked to wait); resolves when done. */
  flush(): Promise<void> {
    this.sendAll = true;
    return this.run();
  }

  private run(): Promise<void> {
    return (this.sending ??= this.drain()
      .catch(() => {})
      .finally(() => {
        this.sending = undefined;
        this.sendAll = false;
        this.schedule(this.o.flushIntervalMs);
      }));
  }

  private async drain(): Promise<void> {
    // Full batches go at once; a partial one only on flush() or when the interval elapses.
    while (Date.now() >= this.holdUntil && (this.entries.length >= this.o.batchSize || (this.sendAll && this.size))) {
      const batch = this.take();
      await this.send(batch, false);
    }
  }

  /** The page is being hidden or left: send everything now, synchronously, before any await. */
  private unload(): void {
    if (this.rateLimited && Date.now() < this.holdUntil) return; // keep them: the page may come back
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.size) {
      const batch = this.take();
      let queued = false;
      try {
        // A text/plain string is CORS-safelisted: no preflight, which would be lost on unload.
        queued = navigator.sendBeacon(this.url(batch), body(batch));
      } catch {}
      // No beacon (or its quota is full): a keepalive fetch outlives the page too.
      if (!queued) void this.send(batch, true);
    }
  }

  private async send(batch: Entry[], keepalive: boolean): Promise<void> {
    let status = 0; // a network error, offline, a CORS refusal
    let retryAfter: string | null = null;
    try {
      // No custom headers: a string body goes as text/plain, so the browser sends no preflight.
      const res = await fetch(this.url(batch), { method: "POST", body: body(batch), keepalive });
      status = res.status;
      retryAfter = res.headers.get("retry-after");
      // Every answer to a valid proof carries the token to use next; a solution is spent once sent.
      this.proof = res.headers.get("x-challenge-token");
      const challenge = res.headers.get("x-challenge");
      if (challenge) {
        // The gateway suspects this address and offers a way out: its solver (a GET of the endpoint),
        // loaded only now, runs in a Web Worker (from a Blob: the gateway may be on another origin);
        // the solution goes with the next batch, sent at once. Without workers the base limit stays.
        const worker = new Worker(URL.createObjectURL(new Blob([`importScripts("${new Request(this.o.endpoint).url}")`])));
        worker.onmessage = (e) => {
          this.proof = e.data;
          this.holdUntil = 0;
          void this.flush();
        };
        worker.postMessage(challenge);
      }
    } catch {}
    this.settle(batch, status, retryAfter);
  }

  /** Session and batch ids (and a proof) go in the query string: sendBeacon cannot set headers. */
  private url(batch: Entry[]): string {
    return this.o.endpoint + (this.o.endpoint.includes("?") ? "&" : "?") + batch[0]!.batch + (this.proof ? "&proof=" + this.proof : "");
  }

  /**
   * A batch sent before and requeued, whole and under its id, so the gateway can tell a retry;
   * else up to a batch of the oldest entries with the same head whose request body stays under
   * MAX_BODY_BYTES.
   */
  private take(): Entry[] {
    const { batch: retry, head } = this.entries[0]!;
    let n = 0;
    let bytes = utf8(head) + TAIL.length - 1;
    for (const e of this.entries) {
      if (retry ? e.batch !== retry : n === this.o.batchSize || e.head !== head || bytes + e.bytes + 1 > MAX_BODY_BYTES) break;
      bytes += e.bytes + 1;
      n++;
    }
    const batch = this.entries.splice(0, n);
    const id = retry ?? `session=${encodeURIComponent(this.o.session())}&batch=${uuid()}`;
    for (const e of batch) e.batch = id;
    return batch;
  }

  private settle(batch: Entry[], status: number, retryAfter: string | null): void {
    if (status === 429) {
      this.requeue(batch);
      this.hold(retryAfterMs(retryAfter), true);
    } else if (status === 0 || status >= 500) {
      const attempt = ++this.failures;
      if (attempt > this.o.maxRetries) {
        this.failures = 0;
        this.dropped += batch.length;
      } else this.requeue(batch);
      // Exponential backoff with jitter (1 s, 2 s, 4 s…, each 50-100 %), so a recovering gateway
      // is not hit by every page at once; the next batch waits too after a drop.
      this.hold(Math.min(30_000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2), false);
    } else {
      this.failures = 0;
      // 400, 413, 415: the gateway refused the batch for good; sending it again cannot help.
      if (status >= 300) this.dropped += batch.length;
    }
  }

  private hold(ms: number, rateLimited: boolean): void {
    ms = Math.ceil(ms); // timers truncate: a timer firing before the hold ends would waste a turn
    this.holdUntil = Date.now() + ms;
    this.rateLimited = rateLimited;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.schedule(ms);
  }

  private requeue(batch: Entry[]): void {
    this.entries.unshift(...batch);
    this.trim();
  }

  /** Bounded memory: the oldest events go first, and are counted. */
  private trim(): void {
    const excess = this.entries.length - this.o.maxQueue;
    if (excess > 0) {
      this.entries.splice(0, excess);
      this.dropped += excess;
    }
  }

  private schedule(delay: number): void {
    if (this.timer === undefined && this.size) {
      this.timer = setTimeout(
        () => {
          this.timer = undefined;
          void this.flush();
        },
        Math.max(delay, this.holdUntil - Date.now()),
      );
    }
  }
}

/** Retry-After is seconds or an HTTP date. */
function retryAfterMs(header: string | null): number {
  if (!header?.trim()) return DEFAULT_RETRY_AFTER_MS;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
  return Number.isNaN(ms) ? DEFAULT_RETRY_AFTER_MS : Math.min(Math.max(ms, MIN_HOLD_MS), MAX_HOLD_MS);
}
