// The proof-of-work challenge for suspected abuse (docs/security.md), in real headless Chromium
// against the real gateway: a script floods the gateway from the page's address, the page's client
// is challenged, solves in a Web Worker with the solver it loads only then, and goes on sending
// under the quota of its own session while the flooding script stays refused.
import { describe, expect, it } from "vitest";
import { chromiumSuite, Gateway, waitFor, watch } from "./support";

const suite = chromiumSuite();

/** The flooding script: it never solves anything. Returns the statuses it got. */
async function flood(gw: Gateway, requests: number): Promise<number[]> {
  const statuses = [];
  for (let i = 0; i < requests; i++) {
    const body = JSON.stringify({ events: [{ level: "info", scope: "flood", sessionId: "s", message: "x", timestamp: new Date().toISOString() }] });
    statuses.push((await fetch(gw.endpoint, { method: "POST", body })).status);
  }
  return statuses;
}

describe("the challenge for suspected abuse, in Chromium", () => {
  it("a page on a flooded address is challenged, solves it with the real client and goes on under its own quota", async () => {
    // 5 requests a minute per address; from its 3rd refusal on, an address's refusals carry a
    // challenge at the default difficulty.
    suite.gateway = await Gateway.start({
      CLIENT_TELEMETRY_BIND: "127.0.0.1:0",
      CLIENT_TELEMETRY_CORS_ALLOWED_ORIGINS: suite.pages.origin,
      CLIENT_TELEMETRY_RATE_LIMIT_MAX_REQUESTS: "5",
      CLIENT_TELEMETRY_CHALLENGE_ENABLED: "true",
      CLIENT_TELEMETRY_CHALLENGE_SECRETS: "e2e-challenge-secret-0123456789-abcdef",
      CLIENT_TELEMETRY_CHALLENGE_THRESHOLD: "3",
    });
    const gw = suite.gateway;
    // The page and the flooding script share the address 127.0.0.1: the script spends its quota.
    expect(await flood(gw, 8)).toEqual([204, 204, 204, 204, 204, 429, 429, 429]);
    const page = await suite.context.newPage();
    const { requests, answers, errors } = watch(page, gw.endpoint);
    const challenged = page.waitForResponse((r) => r.url().startsWith(gw.endpoint) && r.status() === 429);
    await page.goto(suite.pages.url("/iife", { endpoint: gw.endpoint, batchSize: 2, interval: 200 }));
    await page.waitForFunction(() => "telemetry" in window);
    await page.evaluate(() => (window as any).logMany(8));
    const refusal = await challenged;
    const refusedAt = Date.now();
    expect(refusal.headers()["x-challenge"]).toMatch(/^c1\.\d+\.12\.[0-9a-f]{32}\.[0-9a-f]{64}$/);
    const retryAfter = Number(refusal.headers()["retry-after"]);
    expect(retryAfter).toBeGreaterThan(30);

    // All 8 events arrive (after the script's 5) long before the Retry-After of the address's refusal.
    const events = (await gw.waitForEvents(5 + 8, 15_000)).filter((e) => e.scope === "e2e");
    expect(Date.now() - refusedAt).toBeLessThan(retryAfter * 1000);
    expect(events.map((e) => e.message)).toEqual(Array.from({ length: 8 }, (_, i) => `event ${i}`));

    // (Chromium reports requests and answers to the test a moment after they happen.)
    await waitFor("the page's 6 answers", () => answers.length >= 6);
    // The solver was fetched only after the challenge, by the worker (a GET of the endpoint).
    const posts = requests.filter((r) => r.method === "POST");
    const solverLoads = requests.filter((r) => r.method === "GET");
    expect(solverLoads).toHaveLength(1);
    // The refused batch went again with the solution, then every batch with the token it earned.
    const proofs = posts.map((r) => r.url.searchParams.get("proof"));
    expect(proofs[0]).toBeNull();
    expect(proofs[1]).toMatch(new RegExp(`^${refusal.headers()["x-challenge"]!.replaceAll(".", "\\.")}\\.\\d+$`));
    expect(proofs.slice(2).every((p) => p?.startsWith("t1."))).toBe(true);
    expect(posts).toHaveLength(5); // the refused one, then 4 batches of 2
    expect(answers.map((a) => a.status)).toEqual([429, 200 /* the solver */, 204, 204, 204, 204]);
    // How long the page took from the challenge to sending its solution (the solve, mostly).
    const solvedIn = posts[1]!.at - refusedAt;
    console.log(`challenge at difficulty 12 answered in ${solvedIn} ms (worker start, solver load and solve)`);
    expect(solvedIn).toBeLessThan(5000);

    // The flooding script, which solves nothing, is still refused; the page's session is not.
    expect(await flood(gw, 2)).toEqual([429, 429]);
    expect(await gw.metric("client_telemetry_challenge_proofs_total", 'result="solved"')).toBe(1);
    expect(await gw.metric("client_telemetry_challenge_proofs_total", 'result="token"')).toBe(3);
    // Chromium logs the refused request itself; nothing else may appear.
    expect(errors.filter((e) => !/status of 429/.test(e))).toEqual([]);
  });
});
