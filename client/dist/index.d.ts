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
    stats(): {
        queued: number;
        dropped: number;
    };
}
/**
 * A logger for one component. Loggers are cheap: create one per component (at module level); all
 * of a page's loggers share its session id, and those on one endpoint share one queue, whose
 * batch settings come from the first of them. Outside a browser a logger does nothing.
 */
export declare function createLogger(options: LoggerOptions): Logger;
