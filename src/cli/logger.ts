/**
 * The server's logger: JSON lines with the level as a word (`"level":"info"`)
 * and the time in ISO 8601 UTC (`"time":"2026-12-04T15:49:01.123Z"`), the form
 * log pipelines (Loki, Elasticsearch, Cloud Logging) read without a mapping;
 * pino's own default is a number for both.
 */
import { pino, stdTimeFunctions, type DestinationStream, type Logger } from "pino";

/**
 * Creates the logger `serve` uses; `destination` defaults to stdout. Any other
 * JSON log of the process (a decision log) should come from here too, so that
 * every line has one shape.
 *
 * @example
 * createLogger("info").info({ revision }, "loaded policy set");
 * // {"level":"info","time":"2026-12-04T15:49:01.123Z","service":"portcullis","revision":"…","msg":"loaded policy set"}
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: "portcullis" },
    formatters: { level: (label: string) => ({ level: label }) },
    timestamp: stdTimeFunctions.isoTime,
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
