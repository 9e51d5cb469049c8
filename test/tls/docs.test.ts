/** docs/tls.md: the Envoy cluster over TLS carries the settings Portcullis's TLS needs (checked as text: no YAML parser is a dependency). */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { DEFAULT_GRPC_LIMITS } from "../../src/transport/grpc-server.js";
import { DEFAULT_HTTP_LIMITS } from "../../src/transport/http.js";
import { MAX_CERTIFICATE_TEXT_CHARS } from "../../src/transport/client-certificate.js";
import { REPO_ROOT } from "../support/fixtures.js";

const doc = fs.readFileSync(path.join(REPO_ROOT, "docs", "tls.md"), "utf8");
const cluster = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1]!).find((text) => text.includes("transport_socket:"));

describe("docs/tls.md", () => {
  it.each([
    "name: envoy.transport_sockets.tls",
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    'alpn_protocols: ["h2"]',
    "tls_certificates:",
    "trusted_ca:",
    "http2_protocol_options: {}",
    "port_value: 9191",
  ])("the Envoy cluster sets %s", (setting) => {
    expect(cluster).toBeDefined();
    expect(cluster).toContain(setting);
    expect(cluster).not.toMatch(/\t/);
  });

  it("states the limits the code has", () => {
    const mib = (bytes: number) => `${bytes / 1024 / 1024} MiB`;
    expect(doc).toContain(`at most ${mib(DEFAULT_GRPC_LIMITS.maxBufferedBytesPerSession)} per connection and ${mib(DEFAULT_GRPC_LIMITS.maxBufferedBytes)} for the whole server`);
    expect(doc).toContain(`nothing for ${DEFAULT_GRPC_LIMITS.idleTimeoutMs / 1000} s`);
    expect(doc).toContain(`within ${DEFAULT_HTTP_LIMITS.headersTimeoutMs / 1000} s and the whole request within ${DEFAULT_HTTP_LIMITS.requestTimeoutMs / 1000} s`);
    expect(doc).toContain(`over ${MAX_CERTIFICATE_TEXT_CHARS / 1024} KiB`);
    expect(doc).toContain(`may announce ${mib(DEFAULT_HTTP_LIMITS.maxBufferedBodyBytes)} together`);
  });

  it.each(["--tls-cert", "--tls-key", "--tls-client-ca", "PORTCULLIS_TLS_CERT", "PORTCULLIS_TLS_KEY", "PORTCULLIS_TLS_CLIENT_CA"])("documents %s", (name) => expect(doc).toContain(name));
});
