import { defineConfig } from "vitest/config";

// Real headless Chromium against the real gateway binary; one file at a time, no retries.
export default defineConfig({
  test: {
    include: ["test/e2e/**/*.test.ts"],
    environment: "node",
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
