import type { Exception } from "./index";

const MAX_STACK = 8000; // characters; a runaway recursion's stack is mostly the same line
const MAX_MESSAGE = 2000;
const MAX_CAUSES = 5; // a `cause` chain may loop

let own: string | undefined;
/**
 * The URL of the browser build (script tag), so that an error in that file, a bug of this client,
 * is never reported by it, which could loop. Not for the npm build: its file is the page's bundle.
 */
export const ownScript = (src?: string) => void (own = src);

/** Errors are written as `exception` objects, also inside a context (`{ error: e }` is not `{}`). */
export const replacer = (_: string, v: unknown): unknown =>
  v instanceof Error ? exceptionOf(v) : typeof v == "bigint" ? String(v) : v;

/** An `Error` becomes its type, message and stack, followed by its `cause` chain. */
export function exceptionOf(thrown: unknown): Exception {
  if (!(thrown instanceof Error)) {
    // A thrown string, number, plain object…: its text, typed by `typeof`, no stack.
    let message: string | undefined;
    try {
      message = typeof thrown == "string" ? thrown : JSON.stringify(thrown);
    } catch {}
    return { type: typeof thrown, message: String(message ?? thrown).slice(0, MAX_MESSAGE) };
  }
  let stacktrace = stackOf(thrown);
  type Caused = { cause?: unknown }; // ES2022, above this package's ES2020 lib
  let cause = (thrown as Caused).cause;
  for (let i = 0; cause != null && i < MAX_CAUSES; i++) {
    stacktrace += "\nCaused by: " + (cause instanceof Error ? stackOf(cause) : String(cause));
    cause = (cause as Caused).cause;
  }
  return { type: thrown.name, message: String(thrown.message).slice(0, MAX_MESSAGE), stacktrace: stacktrace.slice(0, MAX_STACK) };
}

/** V8 starts a stack with "Type: message"; Firefox and Safari do not, so it is added. */
function stackOf(e: Error): string {
  const head = String(e);
  const stack = e.stack || "";
  return stack.startsWith(head) ? stack : stack ? `${head}\n${stack}` : head;
}

/**
 * Reports the page's uncaught errors and unhandled rejections. Errors that happen while one is
 * being reported, and errors of this script itself, are ignored: there is no feedback loop.
 */
export function captureErrors(report: (message: string, exception: Exception) => void): void {
  let busy = false;
  const on = <E extends Event>(type: string, prefix: string, exception: (e: E) => Exception | undefined) =>
    window.addEventListener(type, (e) => {
      if (busy) return;
      busy = true;
      try {
        const x = exception(e as E);
        // As the browser's console words it: "Uncaught TypeError: x is undefined".
        if (x) report(`${prefix} ${x.stacktrace ? x.type + ": " : ""}${x.message}`, x);
      } catch {}
      busy = false;
    });
  on<ErrorEvent>("error", "Uncaught", (e) =>
    !(e instanceof ErrorEvent) || (own && e.filename === own)
      ? undefined
      : e.error != null
        ? exceptionOf(e.error)
        : // A cross-origin script's error arrives without its Error ("Script error."): where it was is all there is.
          { type: "Error", message: e.message, stacktrace: `    at ${e.filename}:${e.lineno}:${e.colno}` },
  );
  on<PromiseRejectionEvent>("unhandledrejection", "Uncaught (in promise)", (e) => exceptionOf(e.reason));
}
