// Turn any failure into words for a person: the server's message, its ErrorInfo reason and the
// fields its BadRequest names (so a form can show each next to its input).
import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryReader } from "@bufbuild/protobuf/wire";

export interface Problem {
  message: string;
  code: Code | null;
  reason: string;
  // Field path as the server names it (e.g. "dataset.source.port") -> what is wrong.
  fields: Record<string, string>;
  retryAfterSeconds?: number;
}

const CODE_TEXT: Partial<Record<Code, string>> = {
  [Code.Unavailable]: "The control plane cannot be reached; check that it is running.",
  [Code.DeadlineExceeded]: "The request took too long; try again.",
  [Code.PermissionDenied]: "You are not allowed to do this.",
  [Code.Unauthenticated]: "Your session has ended; sign in again.",
};

function readString(r: BinaryReader): string {
  return r.string();
}

// google.rpc.BadRequest { repeated FieldViolation field_violations = 1; }
// google.rpc.BadRequest.FieldViolation { string field = 1; string description = 2; }
function badRequest(bytes: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no !== 1) {
      r.skip(wt);
      continue;
    }
    const v = new BinaryReader(r.bytes());
    let field = "";
    let description = "";
    while (v.pos < v.len) {
      const [fno, fwt] = v.tag();
      if (fno === 1) field = readString(v);
      else if (fno === 2) description = readString(v);
      else v.skip(fwt);
    }
    if (field) out[field] = description;
  }
  return out;
}

// google.rpc.ErrorInfo { string reason = 1; string domain = 2; map<string,string> metadata = 3; }
function errorReason(bytes: Uint8Array): string {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 1) return r.string();
    r.skip(wt);
  }
  return "";
}

// google.rpc.RetryInfo { google.protobuf.Duration retry_delay = 1; } Duration { int64 seconds = 1; }
function retryDelay(bytes: Uint8Array): number | undefined {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no !== 1) {
      r.skip(wt);
      continue;
    }
    const d = new BinaryReader(r.bytes());
    while (d.pos < d.len) {
      const [dno, dwt] = d.tag();
      if (dno === 1) return Number(d.int64());
      d.skip(dwt);
    }
  }
  return undefined;
}

export function problem(err: unknown): Problem {
  if (!(err instanceof ConnectError)) {
    if (err instanceof TypeError) {
      return { message: "The control plane cannot be reached; check that it is running.", code: null, reason: "", fields: {} };
    }
    return { message: err instanceof Error ? err.message : String(err), code: null, reason: "", fields: {} };
  }
  const p: Problem = { message: err.rawMessage || CODE_TEXT[err.code] || Code[err.code], code: err.code, reason: "", fields: {} };
  for (const d of err.details) {
    if (!("type" in d) || !(d.value instanceof Uint8Array)) continue;
    if (d.type === "google.rpc.BadRequest") p.fields = { ...p.fields, ...badRequest(d.value) };
    else if (d.type === "google.rpc.ErrorInfo") p.reason = errorReason(d.value);
    else if (d.type === "google.rpc.RetryInfo") p.retryAfterSeconds = retryDelay(d.value);
  }
  if (!err.rawMessage && CODE_TEXT[err.code]) p.message = CODE_TEXT[err.code]!;
  return p;
}

// The violation for a form field: exact path, or the first one whose path ends with it
// (the server names "dataset.source.port"; the form knows "source.port").
export function fieldError(p: Problem | null, field: string): string | undefined {
  if (!p) return undefined;
  if (field in p.fields) return p.fields[field];
  const hit = Object.keys(p.fields).find((k) => k === field || k.endsWith("." + field));
  return hit ? p.fields[hit] : undefined;
}
