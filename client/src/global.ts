// The entry of the browser build (dist/client-telemetry.min.js) for a <script> tag: defines
// `window.ClientTelemetry`, without the module-export helpers a `globalName` build would add.
import { createLogger } from "./index";

(globalThis as { ClientTelemetry?: object }).ClientTelemetry = { createLogger };
