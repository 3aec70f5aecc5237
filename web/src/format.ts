import { timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";

const nf = new Intl.NumberFormat("en-US");

export function num(n: number | bigint | undefined): string {
  if (n === undefined) return "–";
  return nf.format(typeof n === "bigint" ? Number(n) : n);
}

// 1234567 -> "1.2M"
export function compact(n: number | bigint | undefined): string {
  if (n === undefined) return "–";
  const v = typeof n === "bigint" ? Number(n) : n;
  return new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(v);
}

export function bytes(n: number | bigint | undefined): string {
  if (n === undefined) return "–";
  let v = typeof n === "bigint" ? Number(n) : n;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function date(ts: Timestamp | undefined): Date | undefined {
  return ts && (ts.seconds !== 0n || ts.nanos !== 0) ? timestampDate(ts) : undefined;
}

export function when(ts: Timestamp | undefined): string {
  const d = date(ts);
  return d ? d.toLocaleString() : "–";
}

export function ago(ts: Timestamp | undefined, now = Date.now()): string {
  const d = date(ts);
  if (!d) return "never";
  const s = Math.round((now - d.getTime()) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function seconds(d: Duration | undefined): number {
  return d ? Number(d.seconds) + d.nanos / 1e9 : 0;
}

export function duration(sec: number): string {
  if (sec < 1) return `${Math.round(sec * 1000)} ms`;
  if (sec < 120) return `${sec.toFixed(sec < 10 ? 1 : 0)} s`;
  if (sec < 7200) return `${Math.round(sec / 60)} min`;
  if (sec < 172800) return `${(sec / 3600).toFixed(1)} h`;
  return `${(sec / 86400).toFixed(sec % 86400 === 0 ? 0 : 1)} d`;
}

// "tenants/acme/datasets/fw" -> "fw"; "tenants/acme" -> "acme"
export function leaf(name: string): string {
  return name.slice(name.lastIndexOf("/") + 1);
}

// "tenants/acme/datasets/fw" -> "acme"
export function tenantOf(name: string): string {
  const m = /^tenants\/([^/]+)/.exec(name);
  return m ? m[1] : "";
}

// SCREAMING enum names from protobuf-es ("HEALTH_STATUS_HEALTHY" is exposed as HEALTHY) -> "Healthy"
export function enumLabel(e: Record<number, string>, v: number): string {
  const raw = e[v] ?? "UNSPECIFIED";
  return raw.charAt(0) + raw.slice(1).toLowerCase().replace(/_/g, " ");
}
