import { captureErrors, exceptionOf, replacer } from "./errors";
import { Queue, type Entry } from "./queue";
import { session } from "./session";

export type Level = "info" | "warn" | "error";
export type Context = Record<string, unknown>;

/** An error as sent: `type` is the Error's name (`typeof` for a thrown non-Error), `stacktrace` ends with its `cause` chain. */
export interface Exception {
  type: string;
  message: string;
  stacktrace?: string;
}

/** One event, exactly as the gateway receives it in `{"events":[…]}`. */
export interface TelemetryEvent {
  level: Level;
  scope: string;
  sessionId: string;
  message: string;
  /** RFC 3339, e.g. `2025-01-15T10:30:45.123Z`. */
  timestamp: string;
  requestId?: string;
  context?: Context;
  exception?: Exception;
}

/** Which application sends: sent once per request, not with every event. */
export interface App {
  /** e.g. `shop`: becomes `service.name` downstream. */
  name?: string;
  /** e.g. `1.4.2` or a commit: `service.version`. */
  version?: string;
  /** e.g. `production`: `deployment.environment.name`. */
  environment?: string;
}

export interface LoggerOptions {
  /** The component that logs, e.g. `checkout-form`. */
  scope: string;
  /** Default `NEXT_PUBLIC_CLIENT_TELEMETRY_APP_NAME`, `_APP_VERSION`, `_APP_ENVIRONMENT`, field by field. */
  app?: App;
  /** Default `NEXT_PUBLIC_CLIENT_TELEMETRY_ENDPOINT`, else `/api/client-telemetry`. */
  endpoint?: string;
  /** Events per request. Default `NEXT_PUBLIC_CLIENT_TELEMETRY_BATCH_SIZE`, else 20. */
  batchSize?: number;
  /** Longest wait of a pending event. Default `NEXT_PUBLIC_CLIENT_TELEMETRY_FLUSH_INTERVAL_MS`, else 2000. */
  flushIntervalMs?: number;
  /** Events kept at most while the gateway is unreachable or asks to wait; the oldest go first. Default 1000. */
  maxQueue?: number;
  /** Attempts after the first for a batch that met a network error or a 5xx. Default 3. */
  maxRetries?: number;
  /** Sent with every event of this logger. */
  requestId?: string;
  /** Fraction of loggers that send at all, decided once per logger. Default 1. */
  sampleRate?: number;
  /** Edit an event (scrub PII) or return null to drop it. */
  beforeSend?: (event: TelemetryEvent) => TelemetryEvent | null | undefined | false;
  /** Report the page's uncaught errors and unhandled rejections (the first logger that has it on does). Default true. */
  captureErrors?: boolean;
  /** Send the page URL with its query string (never its fragment). Default false: a query often holds tokens. */
  keepQuery?: boolean;
  /** A new session after this long without an event. Default 30 minutes. */
  sessionIdleTimeoutMs?: number;
  /** A new session after this long in all. Default 4 hours. */
  sessionMaxDurationMs?: number;
}

export interface Logger {
  /**
   * The page's session id: the same for every logger, kept in `sessionStorage` across reloads and
   * same-tab navigations, renewed after inactivity or its maximum age. `""` outside a browser, so
   * a server render never shows one (read it in an effect: see the README).
   */
  readonly sessionId: string;
  /** Logs an event. `context`: any JSON-able object; an `Error` inside it is sent as type, message and stack. */
  info(message: string, context?: object): void;
  /** Logs a warning; see `info`. */
  warn(message: string, context?: object): void;
  /**
   * Logs an error. `error` may be whatever a `catch` caught: an `Error` is sent as `exception` with
   * its stack (and `cause` chain), another thrown value as its text; a plain object is taken as the
   * context. Identical errors logged before the first has left are sent once, with a count.
   */
  error(message: string, error?: unknown, context?: object): void;
  /** Sends every pending event of this logger's endpoint; never rejects. */
  flush(): Promise<void>;
  /** Events waiting, and events lost so far (queue full, refused, or out of retries). */
  stats(): { queued: number; dropped: number };
}

const SDK = { name: "@client-telemetry/browser", version: "0.2.0" };

// Next.js inlines these exact `process.env.NEXT_PUBLIC_*` expressions at build time; without a
// bundler `process` does not exist, hence one guard per read.
const fromEnv = (read: () => string | undefined): string | undefined => {
  try {
    return read();
  } catch {
    return undefined;
  }
};

/** The first usable count or duration: the option, then the environment, then the default. */
const positive = (...candidates: unknown[]): number =>
  Math.floor(candidates.map(Number).find((n) => n >= 1 && n < 2 ** 31) as number);

/** One queue per endpoint, however many loggers: its settings come from the first logger. */
const queues = new Map<string, Queue>();
let browser: object | undefined;
// On the window, not in this module: a page that loads two copies (a bundle and the script tag,
// or the ESM and the CommonJS build) still reports each error once.
const CAPTURING = Symbol.for("client-telemetry.capturing");

/** The language, and the UA client hints where the browser has them (Chromium, secure pages). */
function browserInfo(): object {
  const n = navigator as Navigator & { userAgentData?: { brands: { brand: string }[]; platform: string; mobile: boolean } };
  const ua = n.userAgentData;
  return {
    language: n.language,
    // Without the GREASE entries ("Not/A)Brand"), which only exist to be ignored.
    ...(ua && { brands: ua.brands.filter((b) => !/not.a.brand/i.test(b.brand)), platform: ua.platform, mobile: ua.mobile }),
  };
}

/**
 * A logger for one component. Loggers are cheap: create one per component (at module level); all
 * of a page's loggers share its session id, and those on one endpoint share one queue, whose
 * batch settings come from the first of them. Outside a browser a logger does nothing.
 */
export function createLogger(options: LoggerOptions): Logger {
  const { scope, requestId, beforeSend, sampleRate = 1, keepQuery } = options;
  const endpoint =
    options.endpoint || fromEnv(() => process.env.NEXT_PUBLIC_CLIENT_TELEMETRY_ENDPOINT) || "/api/client-telemetry";
  const name = options.app?.name || fromEnv(() => process.env.NEXT_PUBLIC_CLIENT_TELEMETRY_APP_NAME);
  const version = options.app?.version || fromEnv(() => process.env.NEXT_PUBLIC_CLIENT_TELEMETRY_APP_VERSION);
  const environment = options.app?.environment || fromEnv(() => process.env.NEXT_PUBLIC_CLIENT_TELEMETRY_APP_ENVIRONMENT);
  const app = name || version || environment ? { name, version, environment } : undefined;
  const idle = positive(options.sessionIdleTimeoutMs, 1_800_000);
  const max = positive(options.sessionMaxDurationMs, 14_400_000);
  const inBrowser = typeof document != "undefined";
  const sessionId = (touch: boolean) => (inBrowser ? session(idle, max, touch) : "");
  let queue: Queue | undefined;
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
            2000,
          ),
          maxQueue: positive(options.maxQueue, 1000),
          maxRetries: Math.max(0, Math.floor(Number(options.maxRetries ?? 3))) || 0,
        });
        queues.set(endpoint, queue);
      }
    }
  } catch {}
  const sampled = Math.random() < sampleRate;

  // The body's head, rebuilt only when the page's URL changes (a single-page app navigating).
  let url: string | undefined;
  let head = "";
  const headOf = () => {
    const u = location.href.split(keepQuery ? "#" : /[?#]/)[0];
    if (u !== url) {
      url = u;
      head = JSON.stringify({ app, page: { url }, browser: (browser ??= browserInfo()), sdk: SDK }).slice(0, -1) + ',"events":[';
    }
    return head;
  };

  // The last error event queued: identical ones are counted into it until it leaves.
  let last: { key: string; event: TelemetryEvent; entry: Entry; count: number } | undefined;

  const log = (level: Level, message: string, context?: unknown, exception?: () => Exception, from = scope): void => {
    if (!queue || !sampled) return;
    try {
      let event: TelemetryEvent | null | undefined | false = {
        level,
        scope: from,
        sessionId: sessionId(true),
        message: String(message),
        timestamp: new Date().toISOString(),
      };
      if (requestId) event.requestId = requestId;
      if (context) event.context = context as Context;
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
      // A circular context or a throwing beforeSend loses this event, never breaks the page.
    }
  };

  try {
    const w = window as { [CAPTURING]?: boolean };
    if (inBrowser && options.captureErrors !== false && !w[CAPTURING]) {
      w[CAPTURING] = true;
      captureErrors((message, exception) => log("error", message, undefined, () => exception, "window"));
    }
  } catch {}

  return {
    get sessionId() {
      return sessionId(false);
    },
    info: (message, context) => log("info", message, context),
    warn: (message, context) => log("warn", message, context),
    // What a catch caught: an Error or another thrown value is the exception; a plain object, the context.
    error: (message, error, context) =>
      error instanceof Error || (error != null && typeof error != "object")
        ? log("error", message, context, () => exceptionOf(error))
        : log("error", message, error ?? context),
    flush: () => (queue ? queue.flush() : Promise.resolve()),
    stats: () => ({ queued: queue?.size ?? 0, dropped: queue?.dropped ?? 0 }),
  };
}
