/**
 * docs/envoy.md: the nginx configuration is the one the live test runs, and the
 * Envoy and Istio snippets carry the settings Portcullis relies on. (No YAML
 * parser is a dependency, so the snippets are checked as text.)
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/fixtures.js";

const doc = fs.readFileSync(path.join(REPO_ROOT, "docs", "envoy.md"), "utf8");

function block(language: string, containing: string): string {
  const blocks = [...doc.matchAll(new RegExp("```" + language + "\\n([\\s\\S]*?)```", "g"))].map((match) => match[1]!);
  const found = blocks.find((text) => text.includes(containing));
  expect(found, `a \`${language}\` block containing \`${containing}\``).toBeDefined();
  return found!;
}

describe("docs/envoy.md", () => {
  it("shows docs/nginx.conf verbatim, the file test/nginx/ runs", () => {
    expect(block("nginx", "auth_request")).toBe(fs.readFileSync(path.join(REPO_ROOT, "docs", "nginx.conf"), "utf8"));
  });

  it.each([
    "envoy.filters.http.ext_authz",
    "transport_api_version: V3",
    "envoy_grpc: { cluster_name: portcullis }",
    "include_peer_certificate: true",
    "failure_mode_allow: false",
    "status_on_error: { code: ServiceUnavailable }",
    "http2_protocol_options: {}",
    "port_value: 9191",
  ])("envoy.yaml sets %s", (setting) => {
    const yaml = block("yaml", "static_resources:");
    expect(yaml).toContain(setting);
    expect(yaml).not.toMatch(/\t/);
  });

  it.each(["envoyExtAuthzGrpc:", "envoyExtAuthzHttp:", "timeout: 0.5s", "pathPrefix: /ext-authz/envoy", '"retry-after"', '"www-authenticate"', '"content-type"', '"x-portcullis-code"', "action: CUSTOM", "name: portcullis-grpc"])(
    "the Istio snippet has %s",
    (setting) => expect(block("yaml", "extensionProviders:")).toContain(setting),
  );

  it("the Traefik middleware points at the traefik endpoint", () => {
    expect(block("yaml", "forwardAuth:")).toContain("address: http://portcullis:8181/ext-authz/traefik");
  });
});

describe("README's Envoy and nginx snippets", () => {
  const readme = fs.readFileSync(path.join(REPO_ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Envoy and nginx"));
  const squash = (line: string) => line.replace(/#.*$/, "").replace(/\s+/g, " ").trim();

  it("uses the settings docs/envoy.md explains", () => {
    const yaml = section.match(/```yaml\n([\s\S]*?)```/)![1]!;
    for (const setting of ["transport_api_version: V3", "include_peer_certificate: true", "failure_mode_allow: false", "status_on_error: { code: ServiceUnavailable }"]) expect(yaml).toContain(setting);
  });

  it("shows only nginx directives the tested docs/nginx.conf has", () => {
    const tested = new Set(fs.readFileSync(path.join(REPO_ROOT, "docs", "nginx.conf"), "utf8").split("\n").map(squash));
    const snippet = section.match(/```nginx\n([\s\S]*?)```/)![1]!;
    for (const line of snippet.split("\n").map(squash)) {
      if (line === "" || line === "}" || line.endsWith("{")) continue;
      // The README points at Portcullis directly; docs/nginx.conf uses an upstream block.
      const expected = line.replace("http://127.0.0.1:8181/", "http://portcullis/");
      expect(tested.has(expected), `docs/nginx.conf has \`${expected}\``).toBe(true);
    }
  });
});
