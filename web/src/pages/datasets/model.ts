// The dataset form's state (strings as typed), its conversion to and from the Dataset message,
// the checks made before sending, and the update mask of what changed.
import { create, toJson } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { LabelSelectorSchema } from "@sdk/common_pb";
import {
  DatasetSchema,
  DestinationSchema,
  ProxyAssignmentSchema,
  SourceSchema,
  SourceType,
  type Dataset,
} from "@sdk/datasets_pb";
import type { Transformation } from "@sdk/transforms_pb";
import { leaf, tenantOf } from "../../format";
import { idProblem, portProblem } from "../../validate";
import { optionProblems, sourceInfo } from "./sources";

export interface Row {
  key: string;
  value: string;
}

export type ProxyMode = "agent" | "selector" | "none";

export interface Draft {
  id: string;
  tenant: string;
  displayName: string;
  description: string;
  sourceType: SourceType;
  bindHost: string;
  port: string;
  options: Row[];
  dataHint: string;
  proxyMode: ProxyMode;
  proxyAgent: string;
  selector: Row[];
  active: boolean;
  testing: boolean;
  retention: string;
  labels: Row[];
  destination: string;
  transformations: Transformation[];
}

export function emptyDraft(tenant: string): Draft {
  return {
    id: "",
    tenant,
    displayName: "",
    description: "",
    sourceType: SourceType.SYSLOG_UDP,
    bindHost: "0.0.0.0",
    port: "",
    options: [],
    dataHint: "syslog",
    proxyMode: "agent",
    proxyAgent: "",
    selector: [],
    active: true,
    testing: false,
    retention: "",
    labels: [],
    destination: "default",
    transformations: [],
  };
}

function rows(m: { [k: string]: string }): Row[] {
  return Object.entries(m)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, value]) => ({ key, value }));
}

export function rowsToMap(r: Row[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { key, value } of r) if (key.trim()) out[key.trim()] = value;
  return out;
}

export function fromDataset(ds: Dataset): Draft {
  const proxy = ds.proxy?.target;
  return {
    id: leaf(ds.name),
    tenant: tenantOf(ds.name),
    displayName: ds.displayName,
    description: ds.description,
    sourceType: ds.source?.type ?? SourceType.UNSPECIFIED,
    bindHost: ds.source?.bindHost ?? "",
    port: ds.source?.port ? String(ds.source.port) : "",
    options: rows(ds.source?.options ?? {}),
    dataHint: ds.dataHint,
    proxyMode: proxy?.case === "agent" ? "agent" : proxy?.case === "selector" ? "selector" : "none",
    proxyAgent: proxy?.case === "agent" ? proxy.value : "",
    selector: proxy?.case === "selector" ? rows(proxy.value.matchLabels) : [],
    active: ds.active,
    testing: ds.testing,
    retention: ds.retention ? formatRetention(Number(ds.retention.seconds)) : "",
    labels: rows(ds.labels),
    destination: ds.destination?.connection ?? "",
    transformations: ds.transformations,
  };
}

export function toDataset(d: Draft, base?: Dataset): Dataset {
  const info = sourceInfo(d.sourceType);
  const binds = info?.transport != null;
  const proxy =
    d.proxyMode === "agent"
      ? create(ProxyAssignmentSchema, { target: { case: "agent", value: d.proxyAgent.trim() } })
      : d.proxyMode === "selector"
        ? create(ProxyAssignmentSchema, {
            target: { case: "selector", value: create(LabelSelectorSchema, { matchLabels: rowsToMap(d.selector) }) },
          })
        : undefined;
  const seconds = parseRetention(d.retention);
  return create(DatasetSchema, {
    name: base?.name ?? "",
    etag: base?.etag ?? "",
    displayName: d.displayName.trim(),
    description: d.description.trim(),
    source: create(SourceSchema, {
      type: d.sourceType,
      bindHost: binds ? d.bindHost.trim() : "",
      port: binds && d.port ? Number(d.port) : 0,
      options: rowsToMap(d.options),
    }),
    dataHint: d.dataHint,
    transformations: d.transformations,
    destination: create(DestinationSchema, { connection: d.destination.trim() }),
    proxy,
    active: d.active,
    testing: d.testing,
    retention: typeof seconds === "number" ? create(DurationSchema, { seconds: BigInt(seconds) }) : undefined,
    labels: rowsToMap(d.labels),
  });
}

const UNITS: [string, number][] = [
  ["y", 365 * 86400],
  ["w", 7 * 86400],
  ["d", 86400],
  ["h", 3600],
  ["m", 60],
  ["s", 1],
];

export function formatRetention(seconds: number): string {
  for (const [u, n] of UNITS) if (seconds >= n && seconds % n === 0) return `${seconds / n}${u}`;
  return `${seconds}s`;
}

// "30d", "12h", "2w", "1y" -> seconds; "" -> null (kept forever); undefined when unreadable.
export function parseRetention(text: string): number | null | undefined {
  const t = text.trim();
  if (!t) return null;
  const m = /^(\d+)\s*([ywdhms])$/.exec(t);
  if (!m) return undefined;
  const unit = UNITS.find(([u]) => u === m[2]);
  return unit ? Number(m[1]) * unit[1] : undefined;
}

// Problems found before sending, keyed like the server's field paths (without "dataset.").
export function draftProblems(d: Draft, creating: boolean): Record<string, string> {
  const out: Record<string, string> = {};
  if (creating) {
    const id = idProblem(d.id);
    if (id) out["dataset_id"] = id;
    if (!d.tenant) out["parent"] = "Choose the tenant that owns the dataset.";
  }
  if (d.displayName.length > 200) out["display_name"] = "must be at most 200 characters";
  if (d.description.length > 2000) out["description"] = "must be at most 2000 characters";
  const info = sourceInfo(d.sourceType);
  if (!info) out["source.type"] = "is required";
  if (info?.transport) {
    const port = portProblem(d.port);
    if (port) out["source.port"] = port;
    if (!d.bindHost.trim()) out["source.bind_host"] = "is required (0.0.0.0 listens on every address)";
  }
  for (const [k, v] of Object.entries(optionProblems(d.sourceType, rowsToMap(d.options)))) {
    out[`source.options.${k}`] = v;
  }
  if (d.proxyMode === "agent") {
    const agent = idProblem(d.proxyAgent.trim());
    if (agent) out["proxy.agent"] = agent === "is required" ? "Choose the proxy that collects the dataset." : agent;
  }
  if (d.proxyMode === "selector" && Object.keys(rowsToMap(d.selector)).length === 0) {
    out["proxy.selector.match_labels"] = "must name at least one label";
  }
  const seconds = parseRetention(d.retention);
  if (seconds === undefined) out["retention"] = "Write a number and a unit: 12h, 30d, 2w or 1y; leave empty to keep forever.";
  else if (seconds !== null && (seconds < 3600 || seconds > 100 * 365 * 86400)) {
    out["retention"] = "must be between 1h and 100 years";
  }
  for (const { key, value } of d.labels) {
    if (!key.trim() && value) out["labels"] = "Every label needs a key.";
    else if (key.length > 63 || value.length > 63) out[`labels.${key}`] = "keys must be 1-63 and values 0-63 characters";
  }
  return out;
}

// Stable JSON (sorted keys) to compare two values of one field.
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === "object" && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : x,
  );
}

// The update-mask paths (the server's snake_case names) of the fields `next` changes in `prev`.
export function changedPaths(prev: Dataset, next: Dataset): string[] {
  const a = toJson(DatasetSchema, prev, { alwaysEmitImplicit: true }) as Record<string, Record<string, unknown>>;
  const b = toJson(DatasetSchema, next, { alwaysEmitImplicit: true }) as Record<string, Record<string, unknown>>;
  const paths: string[] = [];
  const top: [string, string][] = [
    ["displayName", "display_name"],
    ["description", "description"],
    ["dataHint", "data_hint"],
    ["transformations", "transformations"],
    ["destination", "destination"],
    ["proxy", "proxy"],
    ["active", "active"],
    ["testing", "testing"],
    ["retention", "retention"],
    ["labels", "labels"],
  ];
  const source: [string, string][] = [
    ["type", "source.type"],
    ["bindHost", "source.bind_host"],
    ["port", "source.port"],
    ["options", "source.options"],
  ];
  for (const [json, path] of source) {
    if (canonical(a.source?.[json]) !== canonical(b.source?.[json])) paths.push(path);
  }
  for (const [json, path] of top) if (canonical(a[json]) !== canonical(b[json])) paths.push(path);
  return paths;
}

// The server names fields "dataset.source.port" (save) or "transformations[0].x" (preview).
export function localPath(field: string): string {
  return field.replace(/^dataset\./, "");
}
