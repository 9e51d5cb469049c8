# Portcullis: build with the toolchain, run on a slim image as an unprivileged user.
# Every step here is runnable without docker: `npm ci && npm prune --omit=dev &&
# sh scripts/prune-native-build.sh && PORTCULLIS_HOST=0.0.0.0 node bin/portcullis.js serve`,
# and `node bin/portcullis.js healthcheck` is the HEALTHCHECK (test/container/ runs what it can).

FROM node:22-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 compiles from source when its prebuilt binary cannot be fetched.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/prune-native-build.sh ./scripts/
# `npm ci` runs the `prepare` script, which compiles src/ into dist/; a
# better-sqlite3 compiled from source leaves ~27 MB of build output that the
# runtime never loads, removed by the prune script.
RUN npm ci && npm prune --omit=dev && sh scripts/prune-native-build.sh node_modules

FROM node:22-bookworm-slim
# Build with `--build-arg VERSION=$(node -p "require('./package.json').version")` to stamp a release.
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="Policy decision point for bearer API tokens: Envoy ext_authz, Connect, gRPC and HTTP" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.documentation="README.md and docs/ in the source tree"
WORKDIR /app
ENV NODE_ENV=production \
    PORTCULLIS_HOST=0.0.0.0 \
    PORTCULLIS_GRPC_PORT=9191 \
    PORTCULLIS_HTTP_PORT=8181 \
    PORTCULLIS_POLICY_DIR=/app/policies \
    PORTCULLIS_DATA_DIR=/var/lib/portcullis
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
# The bundled policies carry their schema (policies/policy.schema.json), so editors find it wherever the folder goes.
COPY policies ./policies
RUN mkdir -p /var/lib/portcullis && chown node:node /var/lib/portcullis
USER node
VOLUME /var/lib/portcullis
EXPOSE 9191 8181
# Asks /readyz on the port PORTCULLIS_HTTP_PORT names (and PORTCULLIS_HOST, 0.0.0.0 asked on loopback);
# the command loads only its own module, not the whole server (about a quarter of the CPU).
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "bin/portcullis.js", "healthcheck"]
# A smaller young generation than V8's default keeps RSS about 30 MB lower under load (BENCHMARKS.md).
ENTRYPOINT ["node", "--max-semi-space-size=8", "bin/portcullis.js"]
CMD ["serve"]
