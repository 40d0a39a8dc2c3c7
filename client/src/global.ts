// The entry of the browser build (dist/client-telemetry.min.js) for a <script> tag: defines
// `window.ClientTelemetry`, without the module-export helpers a `globalName` build would add.
import { ownScript } from "./errors";
import { createLogger } from "./index";

// Only while a classic script first runs is it document.currentScript.
ownScript((document.currentScript as HTMLScriptElement | null)?.src);
(globalThis as { ClientTelemetry?: object }).ClientTelemetry = { createLogger };
