// A query's answer: summary, counts over time, the rows, and a CSV download of all of them.
import type { JsonObject } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Column, QuerySummary } from "@sdk/query_pb";
import { BarChart } from "./Chart";
import { Stat } from "./ui";
import { bytes, date, duration, num, seconds } from "../format";
import { bucket, isNumeric, isTimestamp, stepText, text, toCsv } from "./QueryData";

// Rows drawn in the table; the CSV holds every row received.
export const TABLE_ROWS = 1000;
const LONG = 48;

export interface Answer {
  columns: Column[];
  rows: JsonObject[];
  sql: string;
  notes: string[];
  start?: Timestamp;
  end?: Timestamp;
  summary?: QuerySummary;
}

export function downloadCsv(answer: Answer, name: string): void {
  const blob = new Blob([toCsv(answer.columns, answer.rows)], { type: "text/csv;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.style.display = "none";
  document.body.appendChild(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function Summary({ answer, running }: { answer: Answer; running: boolean }) {
  const s = answer.summary;
  const from = date(answer.start);
  const to = date(answer.end);
  return (
    <>
      <div className="stats query-stats" aria-label="Query summary">
        <Stat label="Rows" value={num(s ? s.rowCount : answer.rows.length)} />
        <Stat label="Bytes scanned" value={s ? bytes(s.bytesScanned) : "–"} />
        <Stat label="Elapsed" value={s ? duration(seconds(s.elapsed)) : running ? "running…" : "–"} />
        <Stat label="Files scanned" value={s ? num(s.filesScanned) : "–"} />
      </div>
      <p className="small muted query-range">
        Time range: {from ? from.toLocaleString() : "the beginning"} – {to ? to.toLocaleString() : "now"}
      </p>
      {s?.truncated && (
        <p className="notice query-truncated" role="status">
          <strong>Truncated.</strong> {s.truncatedReason || "Not every row was returned."} Narrow the query or raise the row limit to see
          the rest.
        </p>
      )}
      {answer.notes.map((n) => (
        <p key={n} className="notice">
          {n}
        </p>
      ))}
    </>
  );
}

export function CountsChart({ answer }: { answer: Answer }) {
  const col = answer.columns.find((c) => c.name === "timestamp" && isTimestamp(c)) ?? answer.columns.find(isTimestamp);
  if (!col) {
    return (
      <p className="muted small">
        No chart: the result has no timestamp column. Select <code>timestamp</code> (or group by <code>time_bucket(…)</code>) to see counts
        over time.
      </p>
    );
  }
  const b = bucket(answer.rows, col.name);
  if (b.bars.length === 0) return <p className="muted small">No chart: no row has a {col.name} value.</p>;
  const label = `Rows per ${stepText(b.stepMs)} by ${col.name}`;
  return (
    <figure className="query-chart">
      <figcaption>
        <strong>{label}</strong>{" "}
        <span className="muted small">
          — counted in the browser over the {num(b.counted)} rows returned{answer.summary?.truncated ? " (the result is truncated)" : ""}
        </span>
      </figcaption>
      <BarChart bars={b.bars} label={label} height={120} />
    </figure>
  );
}

export function ResultsTable({ answer }: { answer: Answer }) {
  const shown = answer.rows.length > TABLE_ROWS ? answer.rows.slice(0, TABLE_ROWS) : answer.rows;
  const numeric = answer.columns.map(isNumeric);
  return (
    <>
      {answer.rows.length > TABLE_ROWS && (
        <p className="small muted">
          The table shows the first {num(TABLE_ROWS)} of {num(answer.rows.length)} rows; the CSV download holds them all.
        </p>
      )}
      <div className="table-wrap query-table-wrap" tabIndex={0} role="region" aria-label="Query results">
        <table className="query-table">
          <thead>
            <tr>
              {answer.columns.map((c, i) => (
                <th key={c.name + i} scope="col" className={numeric[i] ? "num" : undefined} title={c.type}>
                  {c.name}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {shown.map((row, r) => (
              <tr key={r}>
                {answer.columns.map((c, i) => {
                  const v = text(row[c.name]);
                  return (
                    <td key={c.name + i} className={numeric[i] ? "num" : undefined}>
                      {v === null ? (
                        <span className="query-null">null</span>
                      ) : (
                        <span className="query-cell" title={v.length > LONG ? v : undefined}>
                          {v}
                        </span>
                      )}
                    </td>
                  );
                })}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
