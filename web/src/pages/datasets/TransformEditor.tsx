// The dataset's ordered transformation list: add a step of any kind, edit, reorder, remove.
import { useRef, useState } from "react";
import type { PreviewStep } from "@sdk/datasets_pb";
import type { Transformation } from "@sdk/transforms_pb";
import { StepEditor, StepJson, type StepContext } from "./StepEditor";
import { blankStep, STEP_KINDS, stepFromJson, type StepKind } from "./steps";

let nextKey = 1;

export function TransformEditor({
  steps,
  onChange,
  stats,
  ctx,
  disabled,
}: {
  steps: Transformation[];
  onChange: (steps: Transformation[]) => void;
  stats: PreviewStep[] | undefined;
  ctx: StepContext;
  disabled?: boolean;
}) {
  // Stable React keys, so a step's open/JSON state follows it when the list is reordered.
  const keys = useRef<number[]>([]);
  if (keys.current.length !== steps.length) keys.current = steps.map(() => nextKey++);
  const [kind, setKind] = useState<StepKind | "json">("renameField");
  const [jsonDraft, setJsonDraft] = useState<Transformation | null>(null);

  function add() {
    if (kind === "json") {
      setJsonDraft(stepFromJson('{"renameField": {"from": "", "to": ""}}'));
      return;
    }
    keys.current = [...keys.current, nextKey++];
    onChange([...steps, blankStep(kind)]);
  }
  function move(i: number, delta: number) {
    const j = i + delta;
    if (j < 0 || j >= steps.length) return;
    const s = [...steps];
    [s[i], s[j]] = [s[j], s[i]];
    const k = [...keys.current];
    [k[i], k[j]] = [k[j], k[i]];
    keys.current = k;
    onChange(s);
  }
  function remove(i: number) {
    keys.current = keys.current.filter((_, j) => j !== i);
    onChange(steps.filter((_, j) => j !== i));
  }
  return (
    <div className="ds-steps">
      {steps.length === 0 ? (
        <p className="muted">
          No steps: records are stored as the parser reads them. Add a step to rename, drop, parse or filter fields; the
          preview below shows its effect on sample records as you type.
        </p>
      ) : (
        <ol className="ds-step-list">
          {steps.map((s, i) => (
            <StepEditor
              key={keys.current[i]}
              step={s}
              index={i}
              count={steps.length}
              stats={stats?.find((x) => x.index === i)}
              ctx={ctx}
              onChange={(n) => onChange(steps.map((x, j) => (j === i ? n : x)))}
              onMove={(d) => move(i, d)}
              onRemove={() => remove(i)}
            />
          ))}
        </ol>
      )}
      {jsonDraft && (
        <div className="panel ds-json-new">
          <h4>New step from JSON</h4>
          <StepJson step={jsonDraft} onChange={setJsonDraft} label="New step as JSON" />
          <div className="row-actions">
            <button
              type="button"
              onClick={() => {
                keys.current = [...keys.current, nextKey++];
                onChange([...steps, jsonDraft]);
                setJsonDraft(null);
              }}
            >
              Add this step
            </button>
            <button type="button" className="secondary" onClick={() => setJsonDraft(null)}>
              Cancel
            </button>
          </div>
        </div>
      )}
      {!disabled && (
        <div className="ds-add-step">
          <div className="ds-inline">
            <label htmlFor="ds-new-step">New step</label>
            <select id="ds-new-step" value={kind} onChange={(e) => setKind(e.target.value as StepKind | "json")}>
              {STEP_KINDS.map((k) => (
                <option key={k.kind} value={k.kind}>
                  {k.label}
                </option>
              ))}
              <option value="json">Any kind, written as JSON</option>
            </select>
          </div>
          <button type="button" className="secondary" onClick={add}>
            Add step
          </button>
          <small className="muted">
            {kind === "json" ? "Write any step as its proto3 JSON." : STEP_KINDS.find((k) => k.kind === kind)?.help}
          </small>
        </div>
      )}
    </div>
  );
}
