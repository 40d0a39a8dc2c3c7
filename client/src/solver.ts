// The challenge solver (dist/client-telemetry-solver.min.js, served by the gateway at GET of the
// ingest route). Never part of the main bundle: the client loads it only when the gateway
// challenges, into a Web Worker, so the page's main thread never waits on it.
// It finds the first counter n for which SHA-256("<challenge>.<n>") starts with `difficulty` zero
// bits, posts back "<challenge>.<n>" and ends.

// Each digest is a round trip to the browser's crypto thread: many at once keep it busy.
const PARALLEL = 256;
const encoder = new TextEncoder();

const zeroBits = (hash: ArrayBuffer): number => {
  let bits = 0;
  for (const byte of new Uint8Array(hash)) {
    if (byte) return bits + Math.clz32(byte) - 24;
    bits += 8;
  }
  return bits;
};

const scope = self as unknown as {
  onmessage: (e: MessageEvent<string>) => void;
  postMessage(m: string): void;
  close(): void;
};

// The challenge is `c1.<expires>.<difficulty>.<nonce>.<signature>`.
scope.onmessage = async ({ data: value }) => {
  const difficulty = Number(value.split(".")[2]);
  for (let n = 0; ; n += PARALLEL) {
    const candidates = Array.from({ length: PARALLEL }, (_, i) => `${value}.${n + i}`);
    const hashes = await Promise.all(candidates.map((c) => crypto.subtle.digest("SHA-256", encoder.encode(c))));
    const found = hashes.findIndex((h) => zeroBits(h) >= difficulty);
    if (found >= 0) {
      scope.postMessage(candidates[found]!);
      return scope.close();
    }
  }
};
