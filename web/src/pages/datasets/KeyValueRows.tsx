// Rows of key/value inputs (source options, labels, label selectors), each row labelled for
// screen readers, with the error the server or the form found for its key beside it.
import { useId } from "react";
import type { Row } from "./model";

export function KeyValueRows({
  rows,
  onChange,
  noun,
  errors = {},
  keySuggestions,
  secretKeys,
  keyPlaceholder = "key",
  valuePlaceholder = "value",
}: {
  rows: Row[];
  onChange: (rows: Row[]) => void;
  noun: string; // "option", "label"
  errors?: Record<string, string | undefined>;
  keySuggestions?: string[];
  secretKeys?: Set<string>;
  keyPlaceholder?: string;
  valuePlaceholder?: string;
}) {
  const listId = useId();
  const set = (i: number, patch: Partial<Row>) => onChange(rows.map((r, j) => (j === i ? { ...r, ...patch } : r)));
  return (
    <div className="ds-kv">
      {keySuggestions && keySuggestions.length > 0 && (
        <datalist id={listId}>
          {keySuggestions.map((k) => (
            <option key={k} value={k} />
          ))}
        </datalist>
      )}
      {rows.length > 0 && (
        <ul className="ds-kv-rows">
          {rows.map((r, i) => {
            const err = errors[r.key.trim()];
            const errId = `${listId}-err-${i}`;
            return (
              <li key={i}>
                <div className="ds-kv-row">
                  <input
                    aria-label={`${cap(noun)} ${i + 1} key`}
                    placeholder={keyPlaceholder}
                    className="mono"
                    list={keySuggestions ? listId : undefined}
                    value={r.key}
                    aria-invalid={!!err}
                    aria-describedby={err ? errId : undefined}
                    onChange={(e) => set(i, { key: e.target.value })}
                  />
                  <span aria-hidden="true">=</span>
                  <input
                    aria-label={`${cap(noun)} ${i + 1} value`}
                    placeholder={valuePlaceholder}
                    type={secretKeys?.has(r.key.trim()) ? "password" : "text"}
                    autoComplete="off"
                    value={r.value}
                    aria-invalid={!!err}
                    onChange={(e) => set(i, { value: e.target.value })}
                  />
                  <button
                    type="button"
                    className="icon"
                    aria-label={`Remove ${noun} ${r.key || i + 1}`}
                    onClick={() => onChange(rows.filter((_, j) => j !== i))}
                  >
                    ×
                  </button>
                </div>
                {err && (
                  <small id={errId} className="field-error" role="alert">
                    {r.key.trim()} {err}
                  </small>
                )}
              </li>
            );
          })}
        </ul>
      )}
      <button type="button" className="secondary small" onClick={() => onChange([...rows, { key: "", value: "" }])}>
        Add {noun}
      </button>
    </div>
  );
}

function cap(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
