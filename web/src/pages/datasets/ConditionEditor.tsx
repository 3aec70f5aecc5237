// A Condition (compare, regex, in, exists, all, any, not) as nested form rows.
import { useEffect, useId, useState, type ReactNode } from "react";
import { clone, create } from "@bufbuild/protobuf";
import { ConditionSchema, type Condition, type Comparison_Operator } from "@sdk/transforms_pb";
import { blankCondition, OPERATORS } from "./steps";

type Kind = NonNullable<Condition["kind"]["case"]>;

const KINDS: { kind: Kind; label: string }[] = [
  { kind: "compare", label: "Field compares to a value" },
  { kind: "regex", label: "Field matches a pattern" },
  { kind: "in", label: "Field is one of" },
  { kind: "exists", label: "Field exists" },
  { kind: "all", label: "All of" },
  { kind: "any", label: "Any of" },
  { kind: "not", label: "Not" },
];

function blank(kind: Kind): Condition {
  switch (kind) {
    case "compare":
      return blankCondition();
    case "regex":
      return create(ConditionSchema, { kind: { case: "regex", value: { field: "", pattern: "" } } });
    case "in":
      return create(ConditionSchema, { kind: { case: "in", value: { field: "", values: [] } } });
    case "exists":
      return create(ConditionSchema, { kind: { case: "exists", value: { field: "" } } });
    case "all":
      return create(ConditionSchema, { kind: { case: "all", value: { conditions: [blankCondition()] } } });
    case "any":
      return create(ConditionSchema, { kind: { case: "any", value: { conditions: [blankCondition()] } } });
    case "not":
      return create(ConditionSchema, { kind: { case: "not", value: blankCondition() } });
  }
}

// Keep the field name when switching between the single-field kinds.
function switchKind(c: Condition, kind: Kind): Condition {
  const next = blank(kind);
  const old = c.kind;
  const field = old.case === "compare" || old.case === "regex" || old.case === "in" || old.case === "exists" ? old.value.field : "";
  const k = next.kind;
  if (field && (k.case === "compare" || k.case === "regex" || k.case === "in" || k.case === "exists")) k.value.field = field;
  return next;
}

export function ConditionEditor({
  value,
  onChange,
  label,
  path,
  errorAt,
  depth = 0,
  fieldList,
}: {
  value: Condition | undefined;
  onChange: (c: Condition) => void;
  label: string; // names the controls for screen readers: "Filter condition"
  path: string; // field path of this condition, as the server names it
  errorAt: (path: string) => string | undefined;
  depth?: number;
  fieldList?: string;
}) {
  const c = value ?? blankCondition();
  const edit = (fn: (x: Condition) => void) => {
    const x = clone(ConditionSchema, c);
    fn(x);
    onChange(x);
  };
  const k = c.kind;
  const own = errorAt(path);
  const err = (sub: string) => errorAt(`${path}.${sub}`);
  return (
    <div className={"ds-cond" + (depth > 0 ? " nested" : "")}>
      <div className="ds-inline-row">
        <Inline label={depth === 0 ? label : "Condition"} aria={`${label}: kind`}>
          {(p) => (
            <select {...p} value={k.case ?? ""} onChange={(e) => onChange(switchKind(c, e.target.value as Kind))}>
              {!k.case && <option value="">Choose…</option>}
              {KINDS.filter((x) => depth < 6 || !["all", "any", "not"].includes(x.kind)).map((x) => (
                <option key={x.kind} value={x.kind}>
                  {x.label}
                </option>
              ))}
            </select>
          )}
        </Inline>
        {(k.case === "compare" || k.case === "regex" || k.case === "in" || k.case === "exists") && (
          <Inline label="Field" aria={`${label}: field`} error={err(`${k.case}.field`)}>
            {(p) => (
              <input
                {...p}
                className="mono"
                list={fieldList}
                value={k.value.field}
                onChange={(e) => edit((x) => ((x.kind.value as { field: string }).field = e.target.value))}
              />
            )}
          </Inline>
        )}
        {k.case === "compare" && (
          <>
            <Inline label="Operator" aria={`${label}: operator`} error={err("compare.operator")}>
              {(p) => (
                <select
                  {...p}
                  value={k.value.operator}
                  onChange={(e) =>
                    edit((x) => {
                      if (x.kind.case === "compare") x.kind.value.operator = Number(e.target.value) as Comparison_Operator;
                    })
                  }
                >
                  {OPERATORS.map((o) => (
                    <option key={o.op} value={o.op}>
                      {o.label}
                    </option>
                  ))}
                </select>
              )}
            </Inline>
            <Inline label="Value" aria={`${label}: value`} error={err("compare.value")}>
              {(p) => (
                <input
                  {...p}
                  value={k.value.value}
                  onChange={(e) =>
                    edit((x) => {
                      if (x.kind.case === "compare") x.kind.value.value = e.target.value;
                    })
                  }
                />
              )}
            </Inline>
          </>
        )}
        {k.case === "regex" && (
          <Inline label="RE2 pattern" aria={`${label}: pattern`} error={err("regex.pattern")}>
            {(p) => (
              <input
                {...p}
                className="mono"
                value={k.value.pattern}
                onChange={(e) =>
                  edit((x) => {
                    if (x.kind.case === "regex") x.kind.value.pattern = e.target.value;
                  })
                }
              />
            )}
          </Inline>
        )}
        {k.case === "in" && (
          <Inline label="Values (comma-separated)" aria={`${label}: values`} error={err("in.values")}>
            {(p) => (
              <ListInput
                {...p}
                values={k.value.values}
                onChange={(vals) =>
                  edit((x) => {
                    if (x.kind.case === "in") x.kind.value.values = vals;
                  })
                }
              />
            )}
          </Inline>
        )}
      </div>
      {(k.case === "all" || k.case === "any") && (
        <div className="ds-cond-list">
          {k.value.conditions.map((sub, i) => (
            <div key={i} className="ds-cond-item">
              <ConditionEditor
                value={sub}
                label={`${label}, part ${i + 1}`}
                path={`${path}.${k.case}.conditions[${i}]`}
                errorAt={errorAt}
                depth={depth + 1}
                fieldList={fieldList}
                onChange={(n) =>
                  edit((x) => {
                    if (x.kind.case === "all" || x.kind.case === "any") x.kind.value.conditions[i] = n;
                  })
                }
              />
              <button
                type="button"
                className="icon"
                aria-label={`Remove ${label}, part ${i + 1}`}
                onClick={() =>
                  edit((x) => {
                    if (x.kind.case === "all" || x.kind.case === "any") x.kind.value.conditions.splice(i, 1);
                  })
                }
              >
                ×
              </button>
            </div>
          ))}
          {err(`${k.case}.conditions`) && (
            <small className="field-error" role="alert">
              {err(`${k.case}.conditions`)}
            </small>
          )}
          <button
            type="button"
            className="secondary small"
            onClick={() =>
              edit((x) => {
                if (x.kind.case === "all" || x.kind.case === "any") x.kind.value.conditions.push(blankCondition());
              })
            }
          >
            Add condition
          </button>
        </div>
      )}
      {k.case === "not" && (
        <div className="ds-cond-list">
          <ConditionEditor
            value={k.value}
            label={`${label}, negated`}
            path={`${path}.not`}
            errorAt={errorAt}
            depth={depth + 1}
            fieldList={fieldList}
            onChange={(n) =>
              edit((x) => {
                if (x.kind.case === "not") x.kind.value = n;
              })
            }
          />
        </div>
      )}
      {own && (
        <small className="field-error" role="alert">
          {own}
        </small>
      )}
    </div>
  );
}

// A compact labelled control for rows of small inputs; the error sits under it, outside the
// label (so the control's name stays the label).
export function Inline({
  label,
  aria,
  error,
  children,
  wide,
}: {
  label: string;
  aria?: string;
  error?: string;
  wide?: boolean;
  children: (p: { id: string; "aria-label"?: string; "aria-invalid": boolean; "aria-describedby"?: string }) => ReactNode;
}) {
  const id = useId();
  return (
    <div className={"ds-inline" + (error ? " invalid" : "") + (wide ? " wide" : "")}>
      <label htmlFor={id}>{label}</label>
      {children({ id, "aria-label": aria, "aria-invalid": !!error, "aria-describedby": error ? `${id}-error` : undefined })}
      {error && (
        <small id={`${id}-error`} className="field-error" role="alert">
          {error}
        </small>
      )}
    </div>
  );
}

// A list of strings typed as "a, b, c"; the text is kept as typed while it is being edited.
export function ListInput({
  values,
  onChange,
  separator = ",",
  ...rest
}: {
  values: string[];
  onChange: (v: string[]) => void;
  separator?: string;
  "aria-label"?: string;
  "aria-invalid"?: boolean;
  "aria-describedby"?: string;
  id?: string;
}) {
  const lines = separator === "\n";
  const split = (t: string) =>
    t
      .split(separator)
      .map((v) => v.trim())
      .filter(Boolean);
  const glue = lines ? "\n" : separator + " ";
  const [text, setText] = useState(values.join(glue));
  const joined = values.join("\u0000");
  useEffect(() => {
    // Changed from outside (the JSON form, a reorder): show the new list.
    setText((t) => (split(t).join("\u0000") === joined ? t : values.join(glue)));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [joined]);
  const change = (v: string) => {
    setText(v);
    onChange(split(v));
  };
  return lines ? (
    <textarea {...rest} rows={Math.max(2, values.length + 1)} value={text} onChange={(e) => change(e.target.value)} />
  ) : (
    <input {...rest} className="mono" value={text} onChange={(e) => change(e.target.value)} />
  );
}
