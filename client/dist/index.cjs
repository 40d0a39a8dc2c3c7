"use strict";
var __defProp = Object.defineProperty;
var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
var __getOwnPropNames = Object.getOwnPropertyNames;
var __hasOwnProp = Object.prototype.hasOwnProperty;
var __export = (target, all) => {
  for (var name in all)
    __defProp(target, name, { get: all[name], enumerable: true });
};
var __copyProps = (to, from, except, desc) => {
  if (from && typeof from === "object" || typeof from === "function") {
    for (let key of __getOwnPropNames(from))
      if (!__hasOwnProp.call(to, key) && key !== except)
        __defProp(to, key, { get: () => from[key], enumerable: !(desc = __getOwnPropDesc(from, key)) || desc.enumerable });
  }
  return to;
};
var __toCommonJS = (mod) => __copyProps(__defProp({}, "__esModule", { value: true }), mod);

// src/index.ts
var index_exports = {};
__export(index_exports, {
  createLogger: () => createLogger
});
module.exports = __toCommonJS(index_exports);

// src/errors.ts
var MAX_STACK = 8e3;
var MAX_MESSAGE = 2e3;
var MAX_CAUSES = 5;
var own;
var replacer = (_, v) => v instanceof Error ? exceptionOf(v) : typeof v == "bigint" ? String(v) : v;
function exceptionOf(thrown) {
  if (!(thrown instanceof Error)) {
    let message;
    try {
      message = typeof thrown == "string" ? thrown : JSON.stringify(thrown);
    } catch {
    }
    return { type: typeof thrown, message: String(message ?? thrown).slice(0, MAX_MESSAGE) };
  }
  let stacktrace = stackOf(thrown);
  let cause = thrown.cause;
  for (let i = 0; cause != null && i < MAX_CAUSES; i++) {
    stacktrace += "\nCaused by: " + (cause instanceof Error ? stackOf(cause) : String(cause));
    cause = cause.cause;
  }
  return { type: thrown.name, message: String(thrown.message).slice(0, MAX_MESSAGE), stacktrace: stacktrace.slice(0, MAX_STACK) };
}
function stackOf(e) {
  const head = String(e);
  const stack = e.stack || "";
  return stack.startsWith(head) ? stack : stack ? `${head}
${stack}` : head;
}
function captureErrors(report) {
  let busy = false;
  const on = (type, prefix, exception) => window.addEventListener(type, (e) => {
    if (busy) return;
    busy = true;
    try {
      const x = exception(e);
      if (x) report(`${prefix} ${x.stacktrace ? x.type + ": " : ""}${x.message}`, x);
    } catch {
    }
    busy = false;
  });
  on(
    "error",
    "Uncaught",
    (e) => !(e instanceof ErrorEvent) || own && e.filename === own ? void 0 : e.error != null ? exceptionOf(e.error) : (
      // A cross-origin script's error arrives without its Error ("Script error."): where it was is all there is.
      { type: "Error", message: e.message, stacktrace: `    at ${e.filename}:${e.lineno}:${e.colno}` }
    )
  );
  on("unhandledrejection", "Uncaught (in promise)", (e) => exceptionOf(e.reason));
}

// src/queue.ts
var MAX_BODY_BYTES = 60 * 1024;
var TAIL = "]}";
var MIN_HOLD_MS = 1e3;
var MAX_HOLD_MS = 36e5;
var DEFAULT_RETRY_AFTER_MS = 6e4;
var uuid = () => {
  try {
    return crypto.randomUUID();
  } catch {
    const hex = (n) => n.toString(16).padStart(2, "0");
    try {
      return Array.from(crypto.getRandomValues(new Uint8Array(16)), hex).join("");
    } catch {
      return Math.random().toString(36).slice(2) + Date.now().toString(36);
    }
  }
};
var encoder = new TextEncoder();
var utf8 = (s) => encoder.encode(s).length;
var body = (batch) => batch[0].head + batch.map((e) => e.json).join(",") + TAIL;
var Queue = class {
  // a solved challenge or the token it earned (docs/security.md)
  constructor(o) {
    this.o = o;
    this.entries = [];
    this.dropped = 0;
    this.sendAll = false;
    this.holdUntil = 0;
    // nothing is sent before: a Retry-After or a retry backoff
    this.rateLimited = false;
    // the hold is a 429: even the unload path waits
    this.failures = 0;
    window.addEventListener("pagehide", () => this.unload());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") this.unload();
    });
  }
  get size() {
    return this.entries.length;
  }
  push(json, head) {
    const entry = { json, bytes: utf8(json), head };
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
  update(entry, json) {
    if (entry.batch || !this.entries.includes(entry)) return false;
    entry.json = json;
    entry.bytes = utf8(json);
    return true;
  }
  /** Sends everything pending (unless the gateway asked to wait); resolves when done. */
  flush() {
    this.sendAll = true;
    return this.run();
  }
  run() {
    return this.sending ?? (this.sending = this.drain().catch(() => {
    }).finally(() => {
      this.sending = void 0;
      this.sendAll = false;
      this.schedule(this.o.flushIntervalMs);
    }));
  }
  async drain() {
    while (Date.now() >= this.holdUntil && (this.entries.length >= this.o.batchSize || this.sendAll && this.size)) {
      const batch = this.take();
      await this.send(batch, false);
    }
  }
  /** The page is being hidden or left: send everything now, synchronously, before any await. */
  unload() {
    if (this.rateLimited && Date.now() < this.holdUntil) return;
    clearTimeout(this.timer);
    this.timer = void 0;
    while (this.size) {
      const batch = this.take();
      let queued = false;
      try {
        queued = navigator.sendBeacon(this.url(batch), body(batch));
      } catch {
      }
      if (!queued) void this.send(batch, true);
    }
  }
  async send(batch, keepalive) {
    let status = 0;
    let retryAfter = null;
    try {
      const res = await fetch(this.url(batch), { method: "POST", body: body(batch), keepalive });
      status = res.status;
      retryAfter = res.headers.get("retry-after");
      this.proof = res.headers.get("x-challenge-token");
      const challenge = res.headers.get("x-challenge");
      if (challenge) {
        const worker = new Worker(URL.createObjectURL(new Blob([`importScripts("${new Request(this.o.endpoint).url}")`])));
        worker.onmessage = (e) => {
          this.proof = e.data;
          this.holdUntil = 0;
          void this.flush();
        };
        worker.postMessage(challenge);
      }
    } catch {
    }
    this.settle(batch, status, retryAfter);
  }
  /** Session and batch ids (and a proof) go in the query string: sendBeacon cannot set headers. */
  url(batch) {
    return this.o.endpoint + (this.o.endpoint.includes("?") ? "&" : "?") + batch[0].batch + (this.proof ? "&proof=" + this.proof : "");
  }
  /**
   * A batch sent before and requeued, whole and under its id, so the gateway can tell a retry;
   * else up to a batch of the oldest entries with the same head whose request body stays under
   * MAX_BODY_BYTES.
   */
  take() {
    const { batch: retry, head } = this.entries[0];
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
  settle(batch, status, retryAfter) {
    if (status === 429) {
      this.requeue(batch);
      this.hold(retryAfterMs(retryAfter), true);
    } else if (status === 0 || status >= 500) {
      const attempt = ++this.failures;
      if (attempt > this.o.maxRetries) {
        this.failures = 0;
        this.dropped += batch.length;
      } else this.requeue(batch);
      this.hold(Math.min(3e4, 500 * 2 ** attempt) * (0.5 + Math.random() / 2), false);
    } else {
      this.failures = 0;
      if (status >= 300) this.dropped += batch.length;
    }
  }
  hold(ms, rateLimited) {
    ms = Math.ceil(ms);
    this.holdUntil = Date.now() + ms;
    this.rateLimited = rateLimited;
    clearTimeout(this.timer);
    this.timer = void 0;
    this.schedule(ms);
  }
  requeue(batch) {
    this.entries.unshift(...batch);
    this.trim();
  }
  /** Bounded memory: the oldest events go first, and are counted. */
  trim() {
    const excess = this.entries.length - this.o.maxQueue;
    if (excess > 0) {
      this.entries.splice(0, excess);
      this.dropped += excess;
    }
  }
  schedule(delay) {
    if (this.timer === void 0 && this.size) {
      this.timer = setTimeout(
        () => {
          this.timer = void 0;
          void this.flush();
        },
        Math.max(delay, this.holdUntil - Date.now())
      );
    }
  }
};
function retryAfterMs(header) {
  if (!header?.trim()) return DEFAULT_RETRY_AFTER_MS;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1e3 : Date.parse(header) - Date.now();
  return Number.isNaN(ms) ? DEFAULT_RETRY_AFTER_MS : Math.min(Math.max(ms, MIN_HOLD_MS), MAX_HOLD_MS);
}

// src/session.ts
var KEY = "client-telemetry.session";
var memory;
function session(idleMs, maxMs, touch) {
  const now = Date.now();
  let s = memory;
  try {
    s = JSON.parse(sessionStorage.getItem(KEY)) || s;
  } catch {
  }
  if (!(typeof s?.id == "string" && now - s.last <= idleMs && now - s.start <= maxMs)) {
    s = { id: uuid(), start: now, last: now };
    touch = true;
  }
  if (touch) {
    s.last = now;
    memory = s;
    try {
      sessionStorage.setItem(KEY, JSON.stringify(s));
    } catch {
    }
  }
  return s.id;
}

// src/index.ts
var SDK = { name: "@client-telemetry/browser", version: "0.2.0" };
var fromEnv = (read) => {
  try {
    return read();
  } catch {
    return void 0;
  }
};
var positive = (...candidates) => Math.floor(candidates.map(Number).find((n) => n >= 1 && n < 2 ** 31));
var queues = /* @__PURE__ */ new Map();
var browser;
var CAPTURING = /* @__PURE__ */ Symbol.for("client-telemetry.capturing");
function browserInfo() {
  const n = navigator;
  const ua = n.userAgentData;
  return {
    language: n.language,
    // Without the GREASE entries ("Not/A)Brand"), which only exist to be ignored.
    ...ua && { brands: ua.brands.filter((b) => !/not.a.brand/i.test(b.brand)), platform: ua.platform, mobile: ua.mobile }
  };
}
function createLogger(options) {
  const { scope, requestId, beforeSend, sampleRate = 1, keepQuery } = options;
  const endpoint = options.endpoint || fromEnv(() => process.env.NEXT_PUBLIC_CLIENT_TELEMETRY_ENDPOINT) || "/api/client-telemetry";
  const name = options.app?.name || fromEnv(() => process.env.NEXT_PUBLIC_CLIENT_TELEMETRY_APP_NAME);
  const version = options.app?.version || fromEnv(() => process.env.NEXT_PUBLIC_CLIENT_TELEMETRY_APP_VERSION);
  const environment = options.app?.environment || fromEnv(() => process.env.NEXT_PUBLIC_CLIENT_TELEMETRY_APP_ENVIRONMENT);
  const app = name || version || environment ? { name, version, environment } : void 0;
  const idle = positive(options.sessionIdleTimeoutMs, 18e5);
  const max = positive(options.sessionMaxDurationMs, 144e5);
  const inBrowser = typeof document != "undefined";
  const sessionId = (touch) => inBrowser ? session(idle, max, touch) : "";
  let queue;
  try {
    if (inBrowser) {
      queue = queues.get(endpoint);
      if (!queue) {
        queue = new Queue({
          endpoint,
          session: () => sessionId(false),
          batchSize: positive(options.batchSize, fromEnv(() => process.env.NEXT_PUBLIC_CLIENT_TELEMETRY_BATCH_SIZE), 20),
          flushIntervalMs: positive(
            options.flushIntervalMs,
            fromEnv(() => process.env.NEXT_PUBLIC_CLIENT_TELEMETRY_FLUSH_INTERVAL_MS),
            2e3
          ),
          maxQueue: positive(options.maxQueue, 1e3),
          maxRetries: Math.max(0, Math.floor(Number(options.maxRetries ?? 3))) || 0
        });
        queues.set(endpoint, queue);
      }
    }
  } catch {
  }
  const sampled = Math.random() < sampleRate;
  let url;
  let head = "";
  const headOf = () => {
    const u = location.href.split(keepQuery ? "#" : /[?#]/)[0];
    if (u !== url) {
      url = u;
      head = JSON.stringify({ app, page: { url }, browser: browser ?? (browser = browserInfo()), sdk: SDK }).slice(0, -1) + ',"events":[';
    }
    return head;
  };
  let last;
  const log = (level, message, context, exception, from = scope) => {
    if (!queue || !sampled) return;
    try {
      let event = {
        level,
        scope: from,
        sessionId: sessionId(true),
        message: String(message),
        timestamp: (/* @__PURE__ */ new Date()).toISOString()
      };
      if (requestId) event.requestId = requestId;
      if (context) event.context = context;
      if (exception) event.exception = exception();
      const key = exception && JSON.stringify({ ...event, timestamp: 0 }, replacer);
      if (key && key === last?.key) {
        last.event.context = { ...last.event.context, "exception.count": ++last.count };
        if (queue.update(last.entry, JSON.stringify(last.event, replacer))) return;
      }
      if (beforeSend) event = beforeSend(event);
      if (event) {
        const entry = queue.push(JSON.stringify(event, replacer), headOf());
        if (key && entry) last = { key, event, entry, count: 1 };
      }
    } catch {
    }
  };
  try {
    const w = window;
    if (inBrowser && options.captureErrors !== false && !w[CAPTURING]) {
      w[CAPTURING] = true;
      captureErrors((message, exception) => log("error", message, void 0, () => exception, "window"));
    }
  } catch {
  }
  return {
    get sessionId() {
      return sessionId(false);
    },
    info: (message, context) => log("info", message, context),
    warn: (message, context) => log("warn", message, context),
    // What a catch caught: an Error or another thrown value is the exception; a plain object, the context.
    error: (message, error, context) => error instanceof Error || error != null && typeof error != "object" ? log("error", message, context, () => exceptionOf(error)) : log("error", message, error ?? context),
    flush: () => queue ? queue.flush() : Promise.resolve(),
    stats: () => ({ queued: queue?.size ?? 0, dropped: queue?.dropped ?? 0 })
  };
}
