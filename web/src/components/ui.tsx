// Small shared pieces: every page builds from these so errors, empty states and forms look and
// behave the same everywhere.
import { useEffect, useId, useRef, useState, type ReactNode } from "react";
import { HealthStatus } from "@sdk/health_pb";
import type { Problem } from "../errors";

export function PageHeader({ title, children, sub }: { title: string; children?: ReactNode; sub?: ReactNode }) {
  return (
    <header className="page-header">
      <div>
        <h1 id="page-title">{title}</h1>
        {sub && <p className="muted">{sub}</p>}
      </div>
      {children && <div className="actions">{children}</div>}
    </header>
  );
}

// An API failure in words, next to what caused it. Field violations are listed when the form
// that caused them does not show them itself.
export function ErrorNote({ error, showFields = true }: { error: Problem | null | undefined; showFields?: boolean }) {
  if (!error) return null;
  const fields = Object.entries(error.fields);
  return (
    <div className="error-note" role="alert">
      <strong>{error.message}</strong>
      {error.retryAfterSeconds !== undefined && <span> Try again in {error.retryAfterSeconds}s.</span>}
      {showFields && fields.length > 1 && (
        <ul>
          {fields.map(([f, d]) => (
            <li key={f}>
              <code>{f}</code>: {d}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function EmptyState({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="empty">
      <h2>{title}</h2>
      {children}
    </div>
  );
}

export function Loading({ what = "Loading" }: { what?: string }) {
  return (
    <p className="loading" role="status" aria-live="polite">
      {what}…
    </p>
  );
}

// A labelled form control with its hint and error; the child gets the id and aria links.
export function Field({
  label,
  hint,
  error,
  children,
}: {
  label: string;
  hint?: ReactNode;
  error?: string;
  children: (props: { id: string; "aria-invalid": boolean; "aria-describedby"?: string }) => ReactNode;
}) {
  const id = useId();
  const describedBy = [hint ? `${id}-hint` : "", error ? `${id}-error` : ""].filter(Boolean).join(" ") || undefined;
  return (
    <div className={"field" + (error ? " invalid" : "")}>
      <label htmlFor={id}>{label}</label>
      {children({ id, "aria-invalid": !!error, "aria-describedby": describedBy })}
      {hint && (
        <small id={`${id}-hint`} className="hint">
          {hint}
        </small>
      )}
      {error && (
        <small id={`${id}-error`} className="field-error" role="alert">
          {error}
        </small>
      )}
    </div>
  );
}

const STATUS_CLASS: Record<number, string> = {
  [HealthStatus.HEALTHY]: "ok",
  [HealthStatus.DEGRADED]: "warn",
  [HealthStatus.UNHEALTHY]: "bad",
  [HealthStatus.OFFLINE]: "off",
};

export function statusText(s: HealthStatus): string {
  switch (s) {
    case HealthStatus.HEALTHY:
      return "Healthy";
    case HealthStatus.DEGRADED:
      return "Degraded";
    case HealthStatus.UNHEALTHY:
      return "Unhealthy";
    case HealthStatus.OFFLINE:
      return "Offline";
    default:
      return "Unknown";
  }
}

export function StatusBadge({ status, label }: { status: HealthStatus; label?: string }) {
  return <span className={`badge ${STATUS_CLASS[status] ?? "off"}`}>{label ?? statusText(status)}</span>;
}

export function Badge({ tone = "off", children }: { tone?: "ok" | "warn" | "bad" | "off" | "info"; children: ReactNode }) {
  return <span className={`badge ${tone}`}>{children}</span>;
}

export function CopyButton({ text, label = "Copy" }: { text: string; label?: string }) {
  const [done, setDone] = useState(false);
  async function copy() {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // No clipboard permission (plain http on another host): select the text instead.
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    setDone(true);
    window.setTimeout(() => setDone(false), 2000);
  }
  return (
    <button type="button" className="secondary" onClick={copy} aria-live="polite">
      {done ? "Copied" : label}
    </button>
  );
}

// A native <dialog>: focus moves into it, Escape closes it, the page behind is inert.
export function Dialog({
  open,
  title,
  onClose,
  children,
}: {
  open: boolean;
  title: string;
  onClose: () => void;
  children: ReactNode;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog ref={ref} onClose={onClose} aria-labelledby="dialog-title">
      <div className="dialog-head">
        <h2 id="dialog-title">{title}</h2>
        <button type="button" className="icon" aria-label="Close" onClick={onClose}>
          ×
        </button>
      </div>
      {open && children}
    </dialog>
  );
}

// Ask before a destructive action; the button names the action.
export function ConfirmButton({
  children,
  question,
  onConfirm,
  busy,
  className = "danger",
}: {
  children: ReactNode;
  question: string;
  onConfirm: () => void;
  busy?: boolean;
  className?: string;
}) {
  const [asking, setAsking] = useState(false);
  if (!asking)
    return (
      <button type="button" className={className} disabled={busy} onClick={() => setAsking(true)}>
        {children}
      </button>
    );
  return (
    <span className="confirm" role="group" aria-label={question}>
      <span>{question}</span>
      <button
        type="button"
        className={className}
        autoFocus
        onClick={() => {
          setAsking(false);
          onConfirm();
        }}
      >
        Yes
      </button>
      <button type="button" className="secondary" onClick={() => setAsking(false)}>
        No
      </button>
    </span>
  );
}

export function Stat({ label, value, children }: { label: string; value: ReactNode; children?: ReactNode }) {
  return (
    <div className="stat">
      <div className="stat-label">{label}</div>
      <div className="stat-value">{value}</div>
      {children}
    </div>
  );
}

// A form's submit button: disabled and relabelled while its call runs.
export function SubmitButton({ busy, label, busyLabel }: { busy: boolean; label: string; busyLabel: string }) {
  return (
    <button type="submit" disabled={busy}>
      {busy ? busyLabel : label}
    </button>
  );
}
