import { uuid } from "./queue";

/** sessionStorage is per tab and origin, and survives reloads and same-tab navigations. */
const KEY = "client-telemetry.session";

interface Stored {
  id: string;
  /** When the session began and when it last saw an event (ms since the epoch). */
  start: number;
  last: number;
}

// Where sessionStorage is unavailable (storage disabled, some sandboxed frames): this page only.
let memory: Stored | undefined;

/**
 * The page's session id, the same for every logger: a new one after `idleMs` without an event or
 * `maxMs` in all. `touch` (an event is being logged) counts as activity; reading the id does not.
 */
export function session(idleMs: number, maxMs: number, touch: boolean): string {
  const now = Date.now();
  let s = memory;
  try {
    s = JSON.parse(sessionStorage.getItem(KEY)!) || s;
  } catch {}
  // Written as a negation so that a damaged entry (NaN times, no id) starts a new session.
  if (!(typeof s?.id == "string" && now - s.last <= idleMs && now - s.start <= maxMs)) {
    s = { id: uuid(), start: now, last: now };
    touch = true;
  }
  if (touch) {
    s.last = now;
    memory = s;
    try {
      sessionStorage.setItem(KEY, JSON.stringify(s));
    } catch {}
  }
  return s.id;
}
