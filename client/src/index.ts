import { Queue, uuid } from "./queue";

export type Level = "info" | "warn" | "error";
export type Context = Record<string, unknown>;

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
}

export interface LoggerOptions {
  /** The component that logs, e.g. `checkout-form`. */
  scope: string;
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
  /** Fraction of loggers (sessions) that send at all, decided once per logger. Default 1. */
  sampleRate?: number;
  /** Edit an event (scrub PII) or return null to drop it. */
  beforeSend?: (event: TelemetryEvent) => TelemetryEvent | null | undefined | false;
}

export interface Logger {
  readonly sessionId: string;
  info(message: string, context?: Context): void;
  warn(message: string, context?: Context): void;
  error(message: string, context?: Context): void;
  /** Sends every pending event of this logger's endpoint; never rejects. */
  flush(): Promise<void>;
  /** Events waiting, and events lost so far (queue full, refused, or out of retries). */
  stats(): { queued: number; dropped: number };
}

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

export function createLogger(options: LoggerOptions): Logger {
  const { scope, requestId, beforeSend, sampleRate = 1 } = options;
  const endpoint =
    options.endpoint || fromEnv(() => process.env.NEXT_PUBLIC_CLIENT_TELEMETRY_ENDPOINT) || "/api/client-telemetry";
  const sessionId = uuid();
  let queue: Queue | undefined;
  try {
    // Outside a browser (server-side rendering) there is nothing to send from.
    if (typeof document !== "undefined") {
      queue = queues.get(endpoint);
      if (!queue) {
        queue = new Queue({
          endpoint,
          session: sessionId,
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

  const log =
    (level: Level) =>
    (message: string, context?: Context): void => {
      if (!queue || !sampled) return;
      try {
        let event: TelemetryEvent | null | undefined | false = {
          level,
          scope,
          sessionId,
          message: String(message),
          timestamp: new Date().toISOString(),
        };
        if (requestId) event.requestId = requestId;
        if (context) event.context = context;
        if (beforeSend) event = beforeSend(event);
        if (event) queue.push(JSON.stringify(event));
      } catch {
        // A circular context or a throwing beforeSend loses this event, never breaks the page.
      }
    };

  return {
    sessionId,
    info: log("info"),
    warn: log("warn"),
    error: log("error"),
    flush: () => (queue ? queue.flush() : Promise.resolve()),
    stats: () => ({ queued: queue?.size ?? 0, dropped: queue?.dropped ?? 0 }),
  };
}
