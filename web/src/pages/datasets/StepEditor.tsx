// One transformation step: a form for its kind (or its JSON), its optional "when" condition,
// what the last preview says it did, and the server's complaints about it beside each input.
import { useEffect, useState } from "react";
import { clone } from "@bufbuild/protobuf";
import type { PreviewStep } from "@sdk/datasets_pb";
import {
  ChangeCase_Case,
  ConvertType_Type,
  Filter_Mode,
  TransformationSchema,
  type Transformation,
} from "@sdk/transforms_pb";
import { num } from "../../format";
import { ConditionEditor, Inline, ListInput } from "./ConditionEditor";
import { blankCondition, kindInfo, stepFromJson, stepSummary, stepToJson } from "./steps";

export interface StepContext {
  errorAt: (path: string) => string | undefined;
  fieldList?: string; // id of a <datalist> of known field names
  routeList?: string; // id of a <datalist> of the tenant's dataset names
}

export function StepEditor({
  step,
  index,
  count,
  stats,
  ctx,
  onChange,
  onMove,
  onRemove,
}: {
  step: Transformation;
  index: number;
  count: number;
  stats?: PreviewStep;
  ctx: StepContext;
  onChange: (s: Transformation) => void;
  onMove: (delta: number) => void;
  onRemove: () => void;
}) {
  const [asJson, setAsJson] = useState(false);
  const [open, setOpen] = useState(true);
  const info = kindInfo(step.kind.case);
  const base = `transformations[${index}]`;
  const snake = info?.snake ?? "";
  // Exact path, or the first item of a list under it ("remove_fields.fields[2]").
  const err = (sub: string): string | undefined => {
    const path = `${base}.${sub}`;
    return ctx.errorAt(path) ?? ctx.errorAt(`${path}[*]`);
  };
  const kindErr = (f: string) => err(`${snake}.${f}`);
  const edit = (fn: (s: Transformation) => void) => {
    const s = clone(TransformationSchema, step);
    fn(s);
    onChange(s);
  };
  const title = `Step ${index + 1}: ${info?.label ?? "Unknown kind"}`;
  const stepError = ctx.errorAt(base);
  const hasErrors = !!stepError || !!ctx.errorAt(`${base}.*`);
  return (
    <li className={"ds-step" + (hasErrors ? " invalid" : "")}>
      <fieldset aria-label={title}>
        <div className="ds-step-head">
          <button
            type="button"
            className="icon ds-step-toggle"
            aria-expanded={open}
            aria-label={`${open ? "Collapse" : "Expand"} step ${index + 1}`}
            onClick={() => setOpen(!open)}
          >
            {open ? "▾" : "▸"}
          </button>
          <div className="ds-step-title">
            <strong>
              {index + 1}. {info?.label ?? "Unknown kind"}
            </strong>
            {step.id && <span className="mono small"> #{step.id}</span>}
            <div className="mono small muted ds-step-summary">{stepSummary(step)}</div>
          </div>
          {stats && (
            <div className="small ds-step-stats">
              <span className="sr-only">Preview: </span>
              {num(stats.rowsIn)} in → {num(stats.rowsOut)} out
              {stats.failed > 0n && <span className="ds-bad"> · {num(stats.failed)} failed</span>}
              {stats.routed > 0n && <span> · {num(stats.routed)} routed</span>}
            </div>
          )}
          <div className="row-actions">
            <button type="button" className="icon" aria-label={`Move step ${index + 1} up`} disabled={index === 0} onClick={() => onMove(-1)}>
              ↑
            </button>
            <button
              type="button"
              className="icon"
              aria-label={`Move step ${index + 1} down`}
              disabled={index === count - 1}
              onClick={() => onMove(1)}
            >
              ↓
            </button>
            <button type="button" className="secondary small" aria-pressed={asJson} onClick={() => { setAsJson(!asJson); setOpen(true); }}>
              {asJson ? "Form" : "JSON"}
            </button>
            <button type="button" className="danger small" aria-label={`Remove step ${index + 1}`} onClick={onRemove}>
              Remove
            </button>
          </div>
        </div>
        {stepError && (
          <small className="field-error" role="alert">
            {stepError}
          </small>
        )}
        {open && (
          <div className="ds-step-body">
            {asJson || !info ? (
              <StepJson step={step} onChange={onChange} label={`${title} as JSON`} />
            ) : (
              <>
                <KindFields step={step} edit={edit} kindErr={kindErr} ctx={ctx} base={`${base}.${snake}`} />
                <div className="ds-inline-row">
                  <Inline label="Step id (optional)" error={err("id")}>
                    {(p) => (
                      <input
                        {...p}
                        className="mono"
                        placeholder="e.g. drop-debug"
                        value={step.id}
                        onChange={(e) => edit((s) => (s.id = e.target.value.trim()))}
                      />
                    )}
                  </Inline>
                  {step.kind.case !== "filter" && step.kind.case !== "route" && (
                    <label className="check ds-when-toggle">
                      <input
                        type="checkbox"
                        checked={!!step.when}
                        onChange={(e) => edit((s) => (s.when = e.target.checked ? blankCondition() : undefined))}
                      />
                      Only for records matching a condition
                    </label>
                  )}
                </div>
                {step.when && step.kind.case !== "filter" && step.kind.case !== "route" && (
                  <ConditionEditor
                    value={step.when}
                    label={`Step ${index + 1} when`}
                    path={`${base}.when`}
                    errorAt={ctx.errorAt}
                    fieldList={ctx.fieldList}
                    onChange={(c) => edit((s) => (s.when = c))}
                  />
                )}
              </>
            )}
          </div>
        )}
      </fieldset>
    </li>
  );
}

// The step as proto3 JSON (what `floe` and grpcurl take); kept as typed until it parses.
export function StepJson({
  step,
  onChange,
  label,
}: {
  step: Transformation;
  onChange: (s: Transformation) => void;
  label: string;
}) {
  const [text, setText] = useState(() => stepToJson(step));
  const [error, setError] = useState<string>();
  const current = stepToJson(step);
  useEffect(() => {
    // The step changed elsewhere (the form, a reorder): show it unless the text already says so.
    setText((t) => {
      try {
        return stepToJson(stepFromJson(t)) === current ? t : current;
      } catch {
        return t;
      }
    });
  }, [current]);
  return (
    <div className={"field" + (error ? " invalid" : "")}>
      <textarea
        aria-label={label}
        rows={Math.min(16, Math.max(4, text.split("\n").length + 1))}
        spellCheck={false}
        value={text}
        aria-invalid={!!error}
        onChange={(e) => {
          setText(e.target.value);
          try {
            onChange(stepFromJson(e.target.value));
            setError(undefined);
          } catch (err) {
            setError(err instanceof Error ? err.message : String(err));
          }
        }}
      />
      {error ? (
        <small className="field-error" role="alert">
          {error}
        </small>
      ) : (
        <small className="hint">
          The proto3 JSON of a <code>floe.v1.Transformation</code>, e.g.{" "}
          <code>{'{"renameField": {"from": "msg", "to": "message"}}'}</code>.
        </small>
      )}
    </div>
  );
}

function KindFields({
  step,
  edit,
  kindErr,
  ctx,
  base,
}: {
  step: Transformation;
  edit: (fn: (s: Transformation) => void) => void;
  kindErr: (f: string) => string | undefined;
  ctx: StepContext;
  base: string;
}) {
  const k = step.kind;
  // A text input bound to one string field of the step's kind message.
  const text = (label: string, key: string, opts: { mono?: boolean; placeholder?: string; field?: boolean } = {}) => (
    <Inline label={label} error={kindErr(snakeOf(key))}>
      {(p) => (
        <input
          {...p}
          className={opts.mono !== false ? "mono" : undefined}
          placeholder={opts.placeholder}
          list={opts.field ? ctx.fieldList : undefined}
          value={String((k.value as unknown as Record<string, unknown>)[key] ?? "")}
          onChange={(e) =>
            edit((s) => {
              (s.kind.value as unknown as Record<string, unknown>)[key] = e.target.value;
            })
          }
        />
      )}
    </Inline>
  );
  const field = (label = "Field") => text(label, "field", { field: true });
  switch (k.case) {
    case "renameField":
    case "copyField":
      return (
        <div className="ds-inline-row">
          {text("From", "from", { field: true })}
          {text("To", "to")}
        </div>
      );
    case "removeFields":
      return (
        <div className="ds-inline-row">
          <Inline label="Fields (comma-separated)" error={kindErr("fields")} wide>
            {(p) => (
              <ListInput
                {...p}
                values={k.value.fields}
                onChange={(v) =>
                  edit((s) => {
                    if (s.kind.case === "removeFields") s.kind.value.fields = v;
                  })
                }
              />
            )}
          </Inline>
        </div>
      );
    case "addField":
      return (
        <div className="ds-inline-row">
          {field()}
          {text("Value", "value", { mono: false })}
          <label className="check">
            <input
              type="checkbox"
              checked={k.value.overwrite}
              onChange={(e) =>
                edit((s) => {
                  if (s.kind.case === "addField") s.kind.value.overwrite = e.target.checked;
                })
              }
            />
            Replace an existing value
          </label>
        </div>
      );
    case "filter":
      return (
        <>
          <div className="ds-inline-row">
            <Inline label="Records" error={kindErr("mode")}>
              {(p) => (
                <select
                  {...p}
                  value={k.value.mode}
                  onChange={(e) =>
                    edit((s) => {
                      if (s.kind.case === "filter") s.kind.value.mode = Number(e.target.value) as Filter_Mode;
                    })
                  }
                >
                  <option value={Filter_Mode.INCLUDE}>Keep only matching records</option>
                  <option value={Filter_Mode.EXCLUDE}>Drop matching records</option>
                </select>
              )}
            </Inline>
          </div>
          <ConditionEditor
            value={k.value.condition}
            label="Filter condition"
            path={`${base}.condition`}
            errorAt={ctx.errorAt}
            fieldList={ctx.fieldList}
            onChange={(c) =>
              edit((s) => {
                if (s.kind.case === "filter") s.kind.value.condition = c;
              })
            }
          />
        </>
      );
    case "regexReplace":
      return (
        <div className="ds-inline-row">
          {field()}
          {text("RE2 pattern", "pattern")}
          {text("Replacement", "replacement", { placeholder: "\\1 for the first group" })}
        </div>
      );
    case "mask":
      return (
        <div className="ds-inline-row">
          {field()}
          {text("RE2 pattern", "pattern", { placeholder: "\\d{12,19}" })}
          {text("Mask character", "maskChar", { placeholder: "*" })}
          <Inline label="Keep last characters" error={kindErr("keep_last")}>
            {(p) => (
              <input
                {...p}
                type="number"
                min={0}
                value={k.value.keepLast}
                onChange={(e) =>
                  edit((s) => {
                    if (s.kind.case === "mask") s.kind.value.keepLast = Math.max(0, Math.floor(Number(e.target.value) || 0));
                  })
                }
              />
            )}
          </Inline>
        </div>
      );
    case "hashField":
      return (
        <div className="ds-inline-row">
          {field()}
          {text("Write to (optional)", "target", { placeholder: "replaces the field" })}
        </div>
      );
    case "convertType":
      return (
        <div className="ds-inline-row">
          {field()}
          <Inline label="To type" error={kindErr("type")}>
            {(p) => (
              <select
                {...p}
                value={k.value.type}
                onChange={(e) =>
                  edit((s) => {
                    if (s.kind.case === "convertType") s.kind.value.type = Number(e.target.value) as ConvertType_Type;
                  })
                }
              >
                <option value={ConvertType_Type.STRING}>String</option>
                <option value={ConvertType_Type.INT}>Whole number (int64)</option>
                <option value={ConvertType_Type.FLOAT}>Number (float64)</option>
                <option value={ConvertType_Type.BOOL}>Boolean</option>
              </select>
            )}
          </Inline>
        </div>
      );
    case "parseTimestamp":
      return (
        <div className="ds-inline-row">
          {field()}
          {text("Write to (optional)", "target", { placeholder: "same field" })}
          <Inline label="Formats (one per line)" error={kindErr("formats")}>
            {(p) => (
              <ListInput
                {...p}
                separator={"\n"}
                values={k.value.formats}
                onChange={(v) =>
                  edit((s) => {
                    if (s.kind.case === "parseTimestamp") s.kind.value.formats = v;
                  })
                }
              />
            )}
          </Inline>
          {text("Time zone", "timezone", { placeholder: "UTC" })}
          <p className="small muted ds-wide">
            Formats are tried in order: strptime patterns such as <code>%Y-%m-%d %H:%M:%S</code> or{" "}
            <code>%d/%b/%Y:%H:%M:%S %z</code>, or <code>rfc3339</code>, <code>unix_s</code>, <code>unix_ms</code>,{" "}
            <code>unix_us</code>, <code>unix_ns</code>.
          </p>
        </div>
      );
    case "parseKeyValue":
      return (
        <div className="ds-inline-row">
          {field()}
          {text("Pair separator", "pairSeparator", { placeholder: "space" })}
          {text("Key/value separator", "kvSeparator", { placeholder: "=" })}
          {text("Prefix for new fields", "prefix")}
        </div>
      );
    case "parseJson":
      return (
        <div className="ds-inline-row">
          {field()}
          {text("Prefix for new fields", "prefix")}
          {text("Nested name separator", "separator", { placeholder: "." })}
        </div>
      );
    case "changeCase":
      return (
        <div className="ds-inline-row">
          {field()}
          <Inline label="Case" error={kindErr("case")}>
            {(p) => (
              <select
                {...p}
                value={k.value.case}
                onChange={(e) =>
                  edit((s) => {
                    if (s.kind.case === "changeCase") s.kind.value.case = Number(e.target.value) as ChangeCase_Case;
                  })
                }
              >
                <option value={ChangeCase_Case.LOWER}>lower case</option>
                <option value={ChangeCase_Case.UPPER}>UPPER CASE</option>
              </select>
            )}
          </Inline>
        </div>
      );
    case "sample":
      return (
        <div className="ds-inline-row">
          <Inline label="Keep one record in" error={kindErr("rate")}>
            {(p) => (
              <input
                {...p}
                type="number"
                min={1}
                value={k.value.rate}
                onChange={(e) =>
                  edit((s) => {
                    if (s.kind.case === "sample") s.kind.value.rate = Math.max(0, Math.floor(Number(e.target.value) || 0));
                  })
                }
              />
            )}
          </Inline>
        </div>
      );
    case "route":
      return (
        <>
          <ConditionEditor
            value={k.value.condition}
            label="Route condition"
            path={`${base}.condition`}
            errorAt={ctx.errorAt}
            fieldList={ctx.fieldList}
            onChange={(c) =>
              edit((s) => {
                if (s.kind.case === "route") s.kind.value.condition = c;
              })
            }
          />
          <div className="ds-inline-row">
            <Inline label="To dataset" error={kindErr("dataset")} wide>
              {(p) => (
                <input
                  {...p}
                  className="mono"
                  list={ctx.routeList}
                  placeholder="tenants/acme/datasets/other"
                  value={k.value.dataset}
                  onChange={(e) =>
                    edit((s) => {
                      if (s.kind.case === "route") s.kind.value.dataset = e.target.value.trim();
                    })
                  }
                />
              )}
            </Inline>
          </div>
        </>
      );
    default:
      return null;
  }
}

// keepLast -> keep_last: the server names fields in snake_case.
function snakeOf(key: string): string {
  return key.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}
