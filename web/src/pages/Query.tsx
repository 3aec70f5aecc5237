// Query: SQL (or a question) over one dataset's Parquet, streamed from QueryService as JSON rows
// (RESULT_FORMAT_JSON, so the browser needs no Arrow decoder), with a table, counts over time
// and a CSV download.
import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ResultFormat, type ExecuteQueryRequestSchema, type GetLimitsResponse, type QueryableDataset } from "@sdk/query_pb";
import { api } from "../api";
import { ident } from "../components/QueryData";
import { CountsChart, ResultsTable, Summary, downloadCsv, type Answer } from "../components/QueryResults";
import { EmptyState, ErrorNote, Field, Loading, PageHeader } from "../components/ui";
import { problem, type Problem } from "../errors";
import { bytes, date, duration, leaf, num, seconds } from "../format";
import { useLoad } from "../hooks";
import { href, useRoute } from "../router";
import { useTenant } from "../tenant";
import "./Query.css";

type Range = "15m" | "1h" | "24h" | "7d" | "default" | "custom";
const RANGE_MS: Partial<Record<Range, number>> = { "15m": 900_000, "1h": 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000 };
const DEFAULT_ROWS = 1000;

function defaultSql(dataset: string, columns: string[] | undefined, orderBy: boolean): string {
  const table = ident(leaf(dataset));
  const sorted = orderBy && !!columns && columns.includes("timestamp");
  return `SELECT * FROM ${table}${sorted ? " ORDER BY timestamp DESC" : ""} LIMIT 100`;
}

// A limit's span in words: "30 days", "12 h", "15 min".
function span(sec: number): string {
  if (sec >= 86400 && sec % 86400 === 0) return sec === 86400 ? "1 day" : `${sec / 86400} days`;
  if (sec >= 3600 && sec % 3600 === 0) return `${sec / 3600} h`;
  return duration(sec);
}

// The value for <input type="datetime-local"> (local time, minutes).
function localInput(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function hint(p: Problem): string | undefined {
  switch (p.code) {
    case Code.PermissionDenied:
      return "Only one SELECT over this dataset's table may run: no COPY, files, settings, other tables or table functions.";
    case Code.InvalidArgument:
      return p.reason === "SQL_SYNTAX" ? "Fix the SQL and run it again." : undefined;
    case Code.ResourceExhausted:
      return "Narrow the time range, add filters or a LIMIT, and run it again.";
    case Code.FailedPrecondition:
      return undefined;
    default:
      return undefined;
  }
}

function ChooseTenant() {
  const { setTenant, tenants } = useTenant();
  return (
    <>
      <PageHeader title="Query" sub="SQL over a dataset's Parquet files (DuckDB dialect)." />
      <EmptyState title="Choose a tenant to query">
        <p>A query reads one dataset of one tenant. Pick the tenant here or in the top bar.</p>
        {tenants.length > 0 ? (
          <label className="query-inline">
            <span>Tenant to query</span>
            <select value="" onChange={(e) => setTenant(e.target.value)}>
              <option value="">Choose…</option>
              {tenants.map((t) => (
                <option key={t.name} value={leaf(t.name)}>
                  {t.displayName || leaf(t.name)}
                </option>
              ))}
            </select>
          </label>
        ) : (
          <p>
            There are no tenants yet: <a href={href("tenants")}>create one</a>.
          </p>
        )}
      </EmptyState>
    </>
  );
}

export function Query() {
  const { tenant } = useTenant();
  const route = useRoute();
  if (!tenant) return <ChooseTenant />;
  return <QueryTenant key={tenant} tenant={tenant} initial={route.query.get("dataset") ?? ""} />;
}

function Limits({ limits }: { limits: GetLimitsResponse | undefined }) {
  if (!limits) return null;
  const range = seconds(limits.maxTimeRange);
  return (
    <p className="small muted">
      Limits: {num(limits.maxRows)} rows, {range ? `${span(range)} time range` : "any time range"}, {duration(seconds(limits.statementTimeout))}{" "}
      per statement{limits.memoryLimit ? `, ${limits.memoryLimit} memory` : ""}
      {limits.allowOrderBy ? "" : "; ORDER BY is disabled"}.
    </p>
  );
}

function QueryTenant({ tenant, initial }: { tenant: string; initial: string }) {
  const parent = `tenants/${tenant}`;
  const datasets = useLoad(() => api.query.listQueryableDatasets({ parent }).then((r) => r.datasets), [parent]);
  const limits = useLoad(() => api.query.getLimits({}), []);
  const [dataset, setDataset] = useState(initial.startsWith(parent + "/") ? initial : "");
  const schema = useLoad(
    () => (dataset ? api.query.getSchema({ dataset }).then((r) => r.columns) : Promise.resolve(undefined)),
    [dataset],
  );
  const orderBy = limits.data?.allowOrderBy ?? true;
  const columnNames = schema.data?.map((c) => c.name);
  const suggested = dataset ? defaultSql(dataset, columnNames, orderBy) : "";

  const [sql, setSql] = useState("");
  const lastSuggested = useRef("");
  const editor = useRef<HTMLTextAreaElement>(null);
  const [question, setQuestion] = useState("");
  const [range, setRange] = useState<Range>("24h");
  const [from, setFrom] = useState(() => localInput(new Date(Date.now() - 3_600_000)));
  const [to, setTo] = useState(() => localInput(new Date()));
  const [rowLimit, setRowLimit] = useState(String(DEFAULT_ROWS));
  const [formError, setFormError] = useState<Record<string, string>>({});
  const [running, setRunning] = useState(false);
  const [answer, setAnswer] = useState<Answer | null>(null);
  const [error, setError] = useState<Problem | null>(null);
  const [cancelled, setCancelled] = useState(false);
  const [asked, setAsked] = useState("");
  const abort = useRef<AbortController | null>(null);

  // Pick the dataset from the link, or the first one with data.
  useEffect(() => {
    const list = datasets.data;
    if (!list || list.length === 0) return;
    if (!list.some((d) => d.name === dataset)) setDataset(list[0].name);
  }, [datasets.data, dataset]);

  // Keep the link bookmarkable without adding history entries; another dataset's answer is not this one's.
  useEffect(() => {
    if (dataset) window.history.replaceState(null, "", href("query") + "?dataset=" + encodeURIComponent(dataset));
    setAnswer(null);
    setError(null);
    setCancelled(false);
  }, [dataset]);

  // The suggested statement follows the dataset (and its schema) until the user edits it.
  useEffect(() => {
    if (!suggested) return;
    const previous = lastSuggested.current; // read now: the updater runs later, after the ref moves on
    setSql((cur) => (cur === "" || cur === previous ? suggested : cur));
    lastSuggested.current = suggested;
  }, [suggested]);

  useEffect(() => () => abort.current?.abort(), []);

  const chosen: QueryableDataset | undefined = datasets.data?.find((d) => d.name === dataset);
  const maxRows = Number(limits.data?.maxRows ?? 0n);
  const maxRange = seconds(limits.data?.maxTimeRange) * 1000;

  function validate(kind: "sql" | "question"): Record<string, string> {
    const out: Record<string, string> = {};
    if (!dataset) out.dataset = "Choose a dataset.";
    if (kind === "sql" && !sql.trim()) out.sql = "Write one SELECT statement.";
    if (kind === "question" && !question.trim()) out.question = "Ask a question about the data.";
    const n = Number(rowLimit);
    if (!Number.isInteger(n) || n < 1) out.rows = "Use a whole number of 1 or more.";
    else if (maxRows && n > maxRows) out.rows = `The query agent returns at most ${num(maxRows)} rows.`;
    if (range === "custom") {
      const a = Date.parse(from);
      const b = Date.parse(to);
      if (Number.isNaN(a)) out.from = "Give the start of the range.";
      if (Number.isNaN(b)) out.to = "Give the end of the range.";
      if (!out.from && !out.to && a >= b) out.to = "Must be after the start.";
      else if (!out.from && !out.to && maxRange && b - a > maxRange) out.to = `The range may span at most ${span(maxRange / 1000)}.`;
    }
    return out;
  }

  function request(kind: "sql" | "question"): MessageInitShape<typeof ExecuteQueryRequestSchema> {
    let start: Date | undefined;
    let end: Date | undefined;
    if (range === "custom") {
      start = new Date(from);
      end = new Date(to);
    } else if (RANGE_MS[range]) {
      start = new Date(Date.now() - RANGE_MS[range]!);
    }
    return {
      dataset,
      query: kind === "sql" ? { case: "sql", value: sql } : { case: "question", value: question.trim() },
      startTime: start ? timestampFromDate(start) : undefined,
      endTime: end ? timestampFromDate(end) : undefined,
      maxRows: BigInt(Number(rowLimit)),
      format: ResultFormat.JSON,
      // Most answers fit one message; larger ones still stream as header, chunks and summary.
      singleResponse: true,
    };
  }

  async function run(kind: "sql" | "question") {
    const problems = validate(kind);
    setFormError(problems);
    if (Object.keys(problems).length) return;
    abort.current?.abort();
    const ctl = new AbortController();
    abort.current = ctl;
    setRunning(true);
    setError(null);
    setCancelled(false);
    setAsked(kind === "question" ? question.trim() : "");
    setAnswer(null);
    let current: Answer = { columns: [], rows: [], sql: "", notes: [] };
    const publish = (next: Answer) => {
      current = next;
      if (!ctl.signal.aborted) setAnswer(next);
    };
    try {
      for await (const res of api.query.executeQuery(request(kind), { signal: ctl.signal })) {
        const p = res.payload;
        switch (p.case) {
          case "header":
            publish({ ...current, columns: p.value.columns, sql: p.value.sql, notes: p.value.notes, start: p.value.startTime, end: p.value.endTime });
            break;
          case "chunk":
            publish({ ...current, rows: current.rows.concat(p.value.rows) });
            break;
          case "summary":
            publish({ ...current, summary: p.value });
            break;
          case "result": {
            const h = p.value.header;
            publish({
              columns: h?.columns ?? [],
              sql: h?.sql ?? "",
              notes: h?.notes ?? [],
              start: h?.startTime,
              end: h?.endTime,
              rows: p.value.chunk?.rows ?? [],
              summary: p.value.summary,
            });
            break;
          }
          default:
            break; // a response kind this page does not know yet: nothing to show
        }
      }
      if (kind === "question" && current.sql && !ctl.signal.aborted) setSql(current.sql);
    } catch (err) {
      if (ctl.signal.aborted) setCancelled(true);
      else setError(problem(err));
    } finally {
      if (abort.current === ctl) {
        abort.current = null;
        setRunning(false);
      }
    }
  }

  function cancel() {
    abort.current?.abort();
    abort.current = null;
    setRunning(false);
    setCancelled(true);
  }

  function onKey(e: KeyboardEvent<HTMLTextAreaElement>) {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
      e.preventDefault();
      if (!running) void run("sql");
    }
  }

  function insert(name: string) {
    const ta = editor.current;
    const word = ident(name);
    if (!ta) {
      setSql((s) => s + word);
      return;
    }
    const a = ta.selectionStart;
    const b = ta.selectionEnd;
    const next = sql.slice(0, a) + word + sql.slice(b);
    setSql(next);
    requestAnimationFrame(() => {
      ta.focus();
      ta.setSelectionRange(a + word.length, a + word.length);
    });
  }

  function csvName(): string {
    const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "");
    return `${tenant}-${leaf(dataset)}-${stamp}.csv`;
  }

  const questions = !!limits.data?.questionsEnabled;

  return (
    <div className="query">
      <PageHeader title="Query" sub={`SQL over ${tenant}'s datasets (DuckDB dialect), read from their Parquet files.`} />
      <ErrorNote error={datasets.error} />
      {datasets.loading && !datasets.data ? (
        <Loading what="Loading datasets" />
      ) : datasets.data && datasets.data.length === 0 ? (
        <EmptyState title="Nothing to query yet">
          <p>
            A dataset becomes queryable once its first Parquet file is written (testing datasets flush at once). Create a dataset on the{" "}
            <a href={href("datasets")}>Datasets</a> page and send it data, e.g.{" "}
            <code>curl -H "Authorization: Bearer $KEY" --data-binary @events.ndjson http://127.0.0.1:8080/{tenant}/DATASET</code>
          </p>
        </EmptyState>
      ) : datasets.data ? (
        <div className="query-layout">
          <aside className="panel query-side" aria-label="Dataset and schema">
            <Field label="Dataset" error={formError.dataset}>
              {(p) => (
                <select {...p} value={dataset} onChange={(e) => setDataset(e.target.value)}>
                  {datasets.data!.map((d) => (
                    <option key={d.name} value={d.name}>
                      {leaf(d.name)}
                    </option>
                  ))}
                </select>
              )}
            </Field>
            {chosen && (
              <p className="small muted">
                {num(chosen.files)} files, {bytes(chosen.bytes)}
                {date(chosen.startTime) && (
                  <>
                    {" "}
                    · {date(chosen.startTime)!.toLocaleString()} – {date(chosen.endTime)?.toLocaleString() ?? "now"}
                  </>
                )}
              </p>
            )}
            <h2 className="query-schema-title">Schema</h2>
            <ErrorNote error={schema.error} />
            {schema.loading && !schema.data ? (
              <Loading what="Reading the schema" />
            ) : schema.data ? (
              <ul className="query-schema" aria-label="Columns (choose one to insert it)">
                {schema.data.map((c) => (
                  <li key={c.name}>
                    <button type="button" className="query-col" onClick={() => insert(c.name)} title={`Insert ${c.name}`}>
                      <span className="mono">{c.name}</span>
                    </button>
                    <span className="muted small mono" title={c.type}>
                      {c.type}
                    </span>
                  </li>
                ))}
              </ul>
            ) : null}
          </aside>
          <section className="query-main" aria-label="Query editor and results">
            {questions && (
              <form
                className="query-question"
                onSubmit={(e) => {
                  e.preventDefault();
                  if (!running) void run("question");
                }}
                noValidate
              >
                <Field label="Question" hint="Asked in plain language; the query agent writes the SQL, which runs under the same checks." error={formError.question}>
                  {(p) => (
                    <div className="query-inline">
                      <input {...p} value={question} placeholder="e.g. How many failed logins per host today?" onChange={(e) => setQuestion(e.target.value)} />
                      <button type="submit" className="secondary" disabled={running}>
                        Ask
                      </button>
                    </div>
                  )}
                </Field>
              </form>
            )}
            <Field
              label="SQL"
              hint={
                <>
                  One SELECT over the table <code>{dataset ? ident(leaf(dataset)) : "…"}</code>. Ctrl+Enter (⌘+Enter) runs it.
                </>
              }
              error={formError.sql}
            >
              {(p) => (
                <textarea
                  {...p}
                  ref={editor}
                  className="query-editor"
                  rows={6}
                  spellCheck={false}
                  autoCapitalize="off"
                  autoCorrect="off"
                  value={sql}
                  onChange={(e) => setSql(e.target.value)}
                  onKeyDown={onKey}
                />
              )}
            </Field>
            <div className="query-controls">
              <Field label="Time range">
                {(p) => (
                  <select {...p} value={range} onChange={(e) => setRange(e.target.value as Range)}>
                    <option value="15m">Last 15 minutes</option>
                    <option value="1h">Last hour</option>
                    <option value="24h">Last 24 hours</option>
                    <option value="7d">Last 7 days</option>
                    <option value="default">{maxRange ? `Last ${span(maxRange / 1000)} (the limit)` : "All time"}</option>
                    <option value="custom">Custom…</option>
                  </select>
                )}
              </Field>
              {range === "custom" && (
                <>
                  <Field label="From" error={formError.from}>
                    {(p) => <input {...p} type="datetime-local" value={from} onChange={(e) => setFrom(e.target.value)} />}
                  </Field>
                  <Field label="To" error={formError.to}>
                    {(p) => <input {...p} type="datetime-local" value={to} onChange={(e) => setTo(e.target.value)} />}
                  </Field>
                </>
              )}
              <Field label="Row limit" error={formError.rows}>
                {(p) => (
                  <input {...p} type="number" inputMode="numeric" min={1} max={maxRows || undefined} value={rowLimit} onChange={(e) => setRowLimit(e.target.value)} />
                )}
              </Field>
              <div className="query-run">
                {running ? (
                  <button type="button" className="danger" onClick={cancel}>
                    Cancel
                  </button>
                ) : (
                  <button type="button" onClick={() => void run("sql")}>
                    Run query
                  </button>
                )}
              </div>
            </div>
            <Limits limits={limits.data} />
            {error && (
              <div className="query-error">
                <ErrorNote error={error} />
                {hint(error) && <p className="small muted">{hint(error)}</p>}
              </div>
            )}
            {running && <Loading what="Running the query" />}
            {cancelled && !running && (
              <p className="notice" role="status">
                The query was cancelled.
              </p>
            )}
            {answer && (
              <section className="query-answer" aria-label="Results">
                {asked && answer.sql && (
                  <div className="query-written">
                    <p className="small">
                      SQL written for “{asked}” (now in the editor):
                    </p>
                    <pre>{answer.sql}</pre>
                  </div>
                )}
                <Summary answer={answer} running={running} />
                {answer.columns.length > 0 && (answer.rows.length > 0 || running) ? (
                  <>
                    <div className="query-results-head">
                      <h2>Results</h2>
                      <button type="button" className="secondary" disabled={running || answer.rows.length === 0} onClick={() => downloadCsv(answer, csvName())}>
                        Download CSV
                      </button>
                    </div>
                    <CountsChart answer={answer} />
                    <ResultsTable answer={answer} />
                  </>
                ) : !running && answer.summary ? (
                  <EmptyState title="No rows matched">
                    <p>
                      Nothing in {leaf(dataset)} matched this query in the chosen time range. Widen the time range or loosen the filters.
                    </p>
                  </EmptyState>
                ) : null}
              </section>
            )}
          </section>
        </div>
      ) : null}
    </div>
  );
}
