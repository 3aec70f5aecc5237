// Pure helpers of the query page: identifiers, result values, CSV (RFC 4180) and time buckets.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Column } from "@sdk/query_pb";
import type { Bar } from "./Chart";

const PLAIN_IDENT = /^[a-z_][a-z0-9_]*$/;
// DuckDB's reserved keywords (duckdb_keywords()): never bare column or table names.
const RESERVED = new Set(
  "all analyse analyze and any array as asc asymmetric both case cast check collate column constraint create default deferrable desc describe distinct do else end except false fetch for foreign from group having in initially intersect into lambda lateral leading limit not null offset on only or order pivot pivot_longer pivot_wider placing primary qualify references returning select show some summarize symmetric table then to trailing true union unique unpivot using variadic when where window with".split(
    " ",
  ),
);

// A column or table name as SQL: bare when it can be, "double-quoted" otherwise (dataset ids with '-').
export function ident(name: string): string {
  return PLAIN_IDENT.test(name) && !RESERVED.has(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

const NUMERIC = /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|REAL|DECIMAL(\(.*\))?)$/i;

export function isNumeric(c: Column): boolean {
  return NUMERIC.test(c.type.trim());
}

export function isTimestamp(c: Column): boolean {
  return /^TIMESTAMP/i.test(c.type.trim());
}

// A value of a JSON row as text: objects and lists as JSON, null as null.
export function text(v: JsonValue | undefined): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// RFC 4180: fields holding a comma, a double quote, CR or LF are quoted with quotes doubled;
// records end with CRLF. Nulls are empty fields.
export function csvField(v: string | null): string {
  if (v === null) return "";
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

export function toCsv(columns: Column[], rows: JsonObject[]): string {
  const lines = [columns.map((c) => csvField(c.name)).join(",")];
  for (const row of rows) lines.push(columns.map((c) => csvField(text(row[c.name]))).join(","));
  return lines.join("\r\n") + "\r\n";
}

// Timestamps arrive as RFC 3339 text; a TIMESTAMP without a zone is UTC by the pipeline's convention.
export function parseTime(v: JsonValue | undefined): number | undefined {
  if (typeof v !== "string") return undefined;
  const zoned = /([zZ]|[+-]\d\d:?\d\d)$/.test(v) ? v : v + "Z";
  const ms = Date.parse(zoned.replace(" ", "T"));
  return Number.isNaN(ms) ? undefined : ms;
}

const STEPS = [1, 5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400, 30 * 86400].map((s) => s * 1000);
const MAX_BARS = 60;

export interface Buckets {
  bars: Bar[];
  stepMs: number;
  counted: number; // rows with a readable time
}

export function stepText(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${s / 60} min`;
  if (s < 86400) return `${s / 3600} h`;
  return `${s / 86400} d`;
}

// Count rows per time bucket: the smallest step that gives at most MAX_BARS bars; empty buckets are 0.
export function bucket(rows: JsonObject[], column: string): Buckets {
  const times: number[] = [];
  for (const r of rows) {
    const t = parseTime(r[column]);
    if (t !== undefined) times.push(t);
  }
  if (times.length === 0) return { bars: [], stepMs: 0, counted: 0 };
  let lo = Infinity;
  let hi = -Infinity;
  for (const t of times) {
    if (t < lo) lo = t;
    if (t > hi) hi = t;
  }
  const stepMs = STEPS.find((s) => Math.floor(hi / s) - Math.floor(lo / s) + 1 <= MAX_BARS) ?? STEPS[STEPS.length - 1];
  const first = Math.floor(lo / stepMs);
  const counts = new Array<number>(Math.floor(hi / stepMs) - first + 1).fill(0);
  for (const t of times) counts[Math.floor(t / stepMs) - first]++;
  const day = stepMs >= 86400_000;
  const label = (ms: number) => {
    const d = new Date(ms);
    return day ? d.toLocaleDateString() : hi - lo > 86400_000 ? d.toLocaleString([], { dateStyle: "short", timeStyle: "short" }) : d.toLocaleTimeString();
  };
  return { bars: counts.map((value, i) => ({ label: label((first + i) * stepMs), value })), stepMs, counted: times.length };
}
