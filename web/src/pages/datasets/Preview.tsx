// Live preview: sample records (NDJSON) or raw text with a data hint, run through the steps by
// the control plane with the engine pipers use (PreviewTransformations), a moment after the
// steps or the sample change. A newer run cancels the one in flight.
import { useEffect, useMemo, useState } from "react";
import { create, toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { PreviewTransformationsRequestSchema, type PreviewTransformationsResponse } from "@sdk/datasets_pb";
import { TransformationSchema, type Transformation } from "@sdk/transforms_pb";
import { api } from "../../api";
import { ErrorNote } from "../../components/ui";
import { problem, type Problem } from "../../errors";
import { num } from "../../format";

const DEBOUNCE_MS = 400;
const MAX_RECORDS = 1000;
const MAX_ROWS_SHOWN = 200;
const MAX_COLUMNS = 40;
const TEXT_HINTS = ["syslog", "ndjson", "text", "csv", "tsv", "cef", "kv"];

// Parse pasted NDJSON; every problem names its line.
export function parseSample(text: string): { records: JsonObject[]; errors: string[] } {
  const records: JsonObject[] = [];
  const errors: string[] = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    try {
      const v = JSON.parse(line) as JsonValue;
      if (v === null || typeof v !== "object" || Array.isArray(v)) errors.push(`Line ${i + 1} is not a JSON object: write one {…} per line.`);
      else records.push(v);
    } catch (e) {
      errors.push(`Line ${i + 1} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
  });
  if (records.length > MAX_RECORDS) errors.push(`Paste at most ${MAX_RECORDS} records (there are ${records.length}).`);
  return { records, errors };
}

function storageKey(dataset: string): string {
  return `floe.sample.${dataset}`;
}

export function Preview({
  dataset,
  steps,
  dataHint,
  onResult,
  onProblem,
}: {
  dataset: string; // tenants/{t}/datasets/{d}: whose tenant the preview runs as
  steps: Transformation[];
  dataHint: string;
  onResult: (r: PreviewTransformationsResponse | undefined) => void;
  onProblem: (p: Problem | null) => void;
}) {
  const saved = useMemo(() => {
    try {
      return JSON.parse(sessionStorage.getItem(storageKey(dataset)) ?? "null") as { mode: string; text: string } | null;
    } catch {
      return null;
    }
  }, [dataset]);
  const [mode, setMode] = useState(saved?.mode ?? "records");
  const [text, setText] = useState(saved?.text ?? "");
  const [result, setResult] = useState<PreviewTransformationsResponse>();
  const [failure, setFailure] = useState<Problem | null>(null);
  const [running, setRunning] = useState(false);
  const stepsKey = useMemo(() => JSON.stringify(steps.map((s) => toJson(TransformationSchema, s))), [steps]);
  const sample = useMemo(() => (mode === "records" ? parseSample(text) : null), [mode, text]);
  const sampleErrors = sample?.errors ?? [];

  useEffect(() => {
    sessionStorage.setItem(storageKey(dataset), JSON.stringify({ mode, text }));
  }, [dataset, mode, text]);

  useEffect(() => {
    const clear = () => {
      setResult(undefined);
      setFailure(null);
      setRunning(false);
      onResult(undefined);
      onProblem(null);
    };
    if (!text.trim() || (sample && sample.errors.length > 0)) {
      clear();
      return;
    }
    const ctl = new AbortController();
    const timer = window.setTimeout(async () => {
      setRunning(true);
      const req = create(PreviewTransformationsRequestSchema, {
        dataset,
        transformations: steps,
        input: sample
          ? { case: "records", value: { records: sample.records } }
          : { case: "text", value: { dataHint: mode, text } },
      });
      try {
        const r = await api.datasets.previewTransformations(req, { signal: ctl.signal });
        if (ctl.signal.aborted) return;
        setResult(r);
        setFailure(null);
        onResult(r);
        onProblem(null);
      } catch (err) {
        if (ctl.signal.aborted) return;
        const p = problem(err);
        setFailure(p);
        setResult(undefined);
        onResult(undefined);
        onProblem(p);
      } finally {
        if (!ctl.signal.aborted) setRunning(false);
      }
    }, DEBOUNCE_MS);
    return () => {
      window.clearTimeout(timer);
      ctl.abort();
    };
    // Steps are compared by content (stepsKey), not identity.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [stepsKey, text, mode, dataset]);

  // Text mode: what the parser made of the text (records, and lines it could not parse).
  const inputCount = sample
    ? sample.records.length
    : result &&
      Number(result.steps[0]?.rowsIn ?? result.records.length) + result.errors.filter((e) => e.stepIndex < 0).length;
  const routedTotal = result ? Object.values(result.routed).reduce((n, r) => n + r.records.length, 0) : 0;
  return (
    <div className="ds-preview">
      <div className="grid-2 ds-sample-head">
        <div className="field">
          <label htmlFor="ds-sample-format">Sample format</label>
          <select id="ds-sample-format" value={mode} onChange={(e) => setMode(e.target.value)}>
            <option value="records">JSON records, one object per line</option>
            {TEXT_HINTS.map((h) => (
              <option key={h} value={h}>
                Raw text parsed as {h}
                {h === dataHint ? " (this dataset's parser)" : ""}
              </option>
            ))}
          </select>
        </div>
        <div className="ds-preview-status" role="status" aria-live="polite">
          {running
            ? "Running preview…"
            : result
              ? `${inputCount !== undefined ? num(inputCount) + " in → " : ""}${num(result.records.length)} kept, ${num(result.errors.length)} failed${routedTotal ? `, ${num(routedTotal)} routed` : ""}`
              : ""}
        </div>
      </div>
      <div className={"field" + (sampleErrors.length ? " invalid" : "")}>
        <label htmlFor="ds-sample">Sample {mode === "records" ? "records" : "text"}</label>
        <textarea
          id="ds-sample"
          rows={6}
          spellCheck={false}
          value={text}
          aria-invalid={sampleErrors.length > 0}
          aria-describedby="ds-sample-help"
          placeholder={
            mode === "records"
              ? '{"message": "user=alice action=login", "status": "200"}\n{"message": "user=bob action=logout", "status": "oops"}'
              : mode === "syslog"
                ? "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8"
                : "Paste lines as the source sends them"
          }
          onChange={(e) => setText(e.target.value)}
        />
        {sampleErrors.length > 0 ? (
          <div id="ds-sample-help" className="field-error" role="alert">
            {sampleErrors.slice(0, 5).map((e) => (
              <div key={e}>{e}</div>
            ))}
            {sampleErrors.length > 5 && <div>…and {sampleErrors.length - 5} more.</div>}
          </div>
        ) : (
          <small id="ds-sample-help" className="hint">
            {mode === "records"
              ? "One JSON object per line. The preview runs as you type; nothing is saved or sent to the pipeline."
              : `Parsed as pipers parse a ${mode} batch, then run through the steps. Nothing is saved.`}
          </small>
        )}
      </div>
      {failure && (
        <div>
          <ErrorNote error={failure} showFields={false} />
          {Object.keys(failure.fields).length > 0 && (
            <p className="small muted">The steps above show what to fix; the preview runs again once they are valid.</p>
          )}
        </div>
      )}
      {result && <PreviewResult result={result} />}
    </div>
  );
}

function PreviewResult({ result }: { result: PreviewTransformationsResponse }) {
  const routed = Object.entries(result.routed);
  return (
    <div className="ds-preview-result">
      {result.steps.length > 0 && (
        <>
          <h4>Steps</h4>
          <div className="table-wrap">
            <table aria-label="What each step did">
              <thead>
                <tr>
                  <th scope="col">#</th>
                  <th scope="col">Step</th>
                  <th scope="col">Kind</th>
                  <th scope="col" className="num">In</th>
                  <th scope="col" className="num">Out</th>
                  <th scope="col" className="num">Failed</th>
                  <th scope="col" className="num">Routed</th>
                </tr>
              </thead>
              <tbody>
                {result.steps.map((s) => (
                  <tr key={s.index}>
                    <td className="num">{s.index + 1}</td>
                    <td className="mono">{s.step}</td>
                    <td className="mono">{s.kind}</td>
                    <td className="num">{num(s.rowsIn)}</td>
                    <td className="num">{num(s.rowsOut)}</td>
                    <td className={"num" + (s.failed > 0n ? " ds-bad" : "")}>{num(s.failed)}</td>
                    <td className="num">{num(s.routed)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      <h4>Output ({num(result.records.length)} records)</h4>
      {result.records.length === 0 ? (
        <p className="muted">No record is kept: the steps filter, route or fail every sample record.</p>
      ) : (
        <RecordTable records={result.records} label="Output records" />
      )}
      {result.errors.length > 0 && (
        <>
          <h4>Failed records ({num(result.errors.length)})</h4>
          <div className="table-wrap">
            <table aria-label="Failed records">
              <thead>
                <tr>
                  <th scope="col">Step</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Record as the step received it</th>
                </tr>
              </thead>
              <tbody>
                {result.errors.map((e, i) => (
                  <tr key={i}>
                    <td className="mono">{e.stepIndex < 0 ? "parse" : `${e.stepIndex + 1}. ${e.step}`}</td>
                    <td className="ds-bad">{e.reason}</td>
                    <td className="mono small ds-record">{JSON.stringify(e.record ?? {})}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      {routed.map(([name, r]) => (
        <div key={name}>
          <h4>
            Routed to <span className="mono">{name}</span> ({num(r.records.length)})
          </h4>
          <RecordTable records={r.records} label={`Records routed to ${name}`} />
        </div>
      ))}
    </div>
  );
}

function cell(v: JsonValue | undefined) {
  if (v === undefined) return <span className="muted">–</span>;
  if (v === null) return <span className="muted">null</span>;
  if (typeof v === "object") return <span className="mono">{JSON.stringify(v)}</span>;
  return String(v);
}

export function RecordTable({ records, label }: { records: JsonObject[]; label: string }) {
  const columns: string[] = [];
  const seen = new Set<string>();
  for (const r of records.slice(0, MAX_ROWS_SHOWN)) {
    for (const k of Object.keys(r)) {
      if (!seen.has(k) && columns.length < MAX_COLUMNS) {
        seen.add(k);
        columns.push(k);
      }
    }
  }
  return (
    <>
      <div className="table-wrap">
        <table aria-label={label} className="ds-records">
          <thead>
            <tr>
              {columns.map((c) => (
                <th scope="col" key={c} className="mono">
                  {c}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {records.slice(0, MAX_ROWS_SHOWN).map((r, i) => (
              <tr key={i}>
                {columns.map((c) => (
                  <td key={c}>{cell(r[c])}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {records.length > MAX_ROWS_SHOWN && (
        <p className="small muted">
          Showing the first {MAX_ROWS_SHOWN} of {num(records.length)}.
        </p>
      )}
    </>
  );
}
