import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/cli/logger.js";

function capture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  let text = "";
  const stream = new Writable({
    write(chunk, _encoding, done) {
      text += String(chunk);
      done();
    },
  });
  return { stream, lines: () => text.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>) };
}

describe("the server's log lines", () => {
  it.each(["info", "warn", "error"] as const)("name the level `%s` as a word and the time in ISO 8601 UTC", (level) => {
    const { stream, lines } = capture();
    createLogger("info", stream)[level]({ revision: "abc" }, "hello");
    const [line] = lines();
    expect(line).toMatchObject({ level, service: "portcullis", revision: "abc", msg: "hello" });
    expect(line!.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Math.abs(Date.parse(String(line!.time)) - Date.now())).toBeLessThan(60_000);
  });

  it("keeps the configured level's filter", () => {
    const { stream, lines } = capture();
    const log = createLogger("warn", stream);
    log.info("dropped");
    log.warn("kept");
    expect(lines().map((line) => line.msg)).toEqual(["kept"]);
  });
});
