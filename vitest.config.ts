import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Integration tests bind ports and spawn processes; a slow shared machine needs slack.
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
