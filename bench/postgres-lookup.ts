/**
 * The token look-up rows of the in-process section, against PostgreSQL: a
 * database made for the run on the machine's service (127.0.0.1:5432 unless
 * `PORTCULLIS_BENCH_POSTGRES_URL` names another), filled with 1,000,000 tokens
 * (100,000 with `--quick`), looked up through the real `PostgresStore` the
 * way a replica does on a cache miss: `hashToken`, then `findByHash` (one
 * prepared primary-key query over a pooled connection on loopback, row to
 * record).
 *
 * One look-up in flight at a time, so the latency figures are a round trip
 * each; the CPU figure is this process's CPU time per look-up (the client
 * side of the cost a replica pays; the database's own work is not in it).
 * The database is dropped at the end.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { PostgresStore } from "../src/store/postgres/postgres-store.js";
import { generateToken, hashToken } from "../src/token/index.js";
import { BENCH_SECRET } from "./fixtures.js";
import type { Figure, Row } from "./report.js";
import { percentile, spread } from "./stats.js";

const ADMIN_URL = process.env.PORTCULLIS_BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
/** Rows per INSERT while filling: one statement of 1,000 rows is about 100 KB of parameters. */
const INSERT_ROWS = 1_000;

interface LookupPlan {
  readonly runs: number;
  readonly lookupsPerRun: number;
}

/** The PostgreSQL look-up rows, or one skipped row saying why PostgreSQL could not be used. */
export async function postgresLookupRows(options: { readonly quick: boolean; readonly log: (message: string) => void }): Promise<Row[]> {
  const total = options.quick ? 100_000 : 1_000_000;
  const label = total.toLocaleString("en-US");
  const name = `portcullis_bench_${process.pid}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 2_000 });
  try {
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
  } catch (error) {
    await admin.end().catch(() => undefined);
    return [{ section: "in-process", name: `token look-up, PostgreSQL, ${label} stored`, status: "skipped", note: `PostgreSQL unreachable at ${ADMIN_URL}: ${(error as Error).message}`, figures: [] }];
  }
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  let store: PostgresStore | null = null;
  try {
    store = await PostgresStore.open({ url: url.toString(), secret: BENCH_SECRET });
    options.log(`in-process: filling PostgreSQL with ${label} tokens`);
    const started = performance.now();
    const probe = await fill(url.toString(), total, options.quick ? 10_000 : 100_000);
    const fillSeconds = (performance.now() - started) / 1000;
    const sample = probe.slice(0, 1_000);
    const unknown = Array.from({ length: 1_000 }, () => generateToken("sk_live_"));
    const plan: LookupPlan = options.quick ? { runs: 3, lookupsPerRun: 1_000 } : { runs: 5, lookupsPerRun: 5_000 };
    const tokens = store.tokens;
    const find = async (hash: string) => tokens.findByHash(hash);
    if ((await find(hashToken(BENCH_SECRET, sample[0]!))) === undefined) throw new Error("a bulk-inserted token was not found in PostgreSQL");

    options.log(`in-process: PostgreSQL look-ups with ${label} tokens`);
    let next = 0;
    const rows: Row[] = [
      {
        section: "in-process",
        name: `store fill: PostgreSQL, ${label} tokens`,
        status: "ok",
        note: "bench-only: the probe tokens in INSERTs of 1,000 rows, the rest generated in the database, then VACUUM ANALYZE",
        figures: [{ label: "total", unit: "s", value: { median: fillSeconds, min: fillSeconds, max: fillSeconds, runs: 1 } }],
      },
      {
        section: "in-process",
        name: `token look-up, PostgreSQL, ${label} stored: cache miss, stored token, hot pages`,
        status: "ok",
        note: "1,000 tokens cycled, so their pages stay in PostgreSQL's shared buffers; one look-up in flight over a pooled loopback connection",
        figures: await timeLookups(plan, (i) => find(hashToken(BENCH_SECRET, sample[i % sample.length]!))),
      },
      {
        section: "in-process",
        name: `token look-up, PostgreSQL, ${label} stored: cache miss, stored token, cold pages`,
        status: "ok",
        note: "distinct tokens, each looked up once: their index and heap pages mostly come from the OS, as for a token not seen lately",
        figures: await timeLookups(plan, () => find(hashToken(BENCH_SECRET, probe[next++ % probe.length]!))),
      },
      {
        section: "in-process",
        name: `token look-up, PostgreSQL, ${label} stored: cache miss, unknown token`,
        status: "ok",
        figures: await timeLookups(plan, (i) => find(hashToken(BENCH_SECRET, unknown[i % unknown.length]!))),
      },
    ];
    return rows;
  } finally {
    await store?.close();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
    await admin.end().catch(() => undefined);
  }
}

/** Inserts `probeCount` tokens whose plaintexts are returned, then fillers up to `total`, then analyses the table. */
async function fill(url: string, total: number, probeCount: number): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const createdAt = Date.now() - 86_400_000;
    const probe: string[] = [];
    for (let start = 0; start < probeCount; start += INSERT_ROWS) {
      const values: unknown[] = [];
      const tuples: string[] = [];
      for (let n = start; n < Math.min(start + INSERT_ROWS, probeCount); n++) {
        const token = generateToken("sk_live_");
        probe.push(token);
        const at = values.length;
        values.push(hashToken(BENCH_SECRET, token), `tok_b${n}`, `tenant${n % 1000}`);
        tuples.push(`($${at + 1}, $${at + 2}, 'sk_live_', $${at + 3}, 'main', 'production', 'service', 'bench', 'tenant_operator', ${createdAt})`);
      }
      await client.query(`INSERT INTO tokens (hash, id, prefix, tenant, workspace, environment, type, name, role, created_at) VALUES ${tuples.join(", ")}`, values);
    }
    await client.query(
      `INSERT INTO tokens (hash, id, prefix, tenant, workspace, environment, type, name, role, created_at)
       SELECT encode(sha256(convert_to('filler-' || n, 'UTF8')), 'hex'), 'tok_f' || n, 'sk_live_', 'tenant' || (n % 1000), 'main', 'production', 'service', 'bench', 'tenant_operator', $1
       FROM generate_series($2::bigint, $3::bigint) AS n`,
      [createdAt, probeCount, total - 1],
    );
    await client.query("VACUUM ANALYZE tokens");
    return probe;
  } finally {
    await client.end();
  }
}

/** Per run: p50 and p99 latency of sequential look-ups, and this process's CPU per look-up; spreads over runs. */
async function timeLookups(plan: LookupPlan, lookup: (i: number) => Promise<unknown>): Promise<Figure[]> {
  for (let i = 0; i < 200; i++) await lookup(i); // warm-up: prepared statement, pool, JIT
  const p50: number[] = [];
  const p99: number[] = [];
  const cpu: number[] = [];
  let i = 0;
  for (let run = 0; run < plan.runs; run++) {
    const latencies: number[] = [];
    const cpuStart = process.cpuUsage();
    for (let n = 0; n < plan.lookupsPerRun; n++, i++) {
      const started = performance.now();
      await lookup(i);
      latencies.push((performance.now() - started) * 1000);
    }
    const used = process.cpuUsage(cpuStart);
    latencies.sort((a, b) => a - b);
    p50.push(percentile(latencies, 50));
    p99.push(percentile(latencies, 99));
    cpu.push((used.user + used.system) / plan.lookupsPerRun);
  }
  return [
    { label: "p50", unit: "µs", value: spread(p50) },
    { label: "p99", unit: "µs", value: spread(p99) },
    { label: "client CPU per look-up", unit: "µs", value: spread(cpu) },
  ];
}
