// The "New API key" form: what a key may be is checked here with the server's own rules
// (control_plane/services/keys.py check_grant) before anything is sent.
import { useState, type FormEvent } from "react";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Role } from "@sdk/common_pb";
import { ApiKeySchema, KeyKind, type CreateApiKeyResponse } from "@sdk/keys_pb";
import { api } from "../api";
import { ErrorNote, Field, SubmitButton } from "./ui";
import { fieldError } from "../errors";
import { leaf } from "../format";
import { useAction } from "../hooks";
import { getSession, isAdmin } from "../session";
import { useTenant } from "../tenant";

// The tenant select's value for a key valid in every tenant (an empty value means "not chosen").
export const EVERY_TENANT = "*";

export const ROLE_TEXT: Record<number, string> = {
  [Role.ADMIN]: "Admin",
  [Role.EDITOR]: "Editor",
  [Role.VIEWER]: "Viewer",
  [Role.AGENT]: "Agent",
};

const ROLE_HINT: Record<number, string> = {
  [Role.ADMIN]: "Full control of every resource; never bound to a tenant.",
  [Role.EDITOR]: "Reads and writes datasets and keys (within its tenant when bound).",
  [Role.VIEWER]: "Read-only access (within its tenant when bound).",
  [Role.AGENT]: "For agent daemons (proxy, receiver, …): may open the control stream.",
};

type Expiry = "never" | "30" | "90" | "365" | "date";

function expiryDate(expiry: Expiry, on: string): Date | undefined {
  if (expiry === "never") return undefined;
  if (expiry === "date") {
    if (!on) return undefined;
    // Valid through the chosen day (local time).
    const [y, m, d] = on.split("-").map(Number);
    return new Date(y, m - 1, d, 23, 59, 59);
  }
  return new Date(Date.now() + Number(expiry) * 86_400_000);
}

export function CreateKeyForm({ onCreated }: { onCreated: (r: CreateApiKeyResponse) => void }) {
  const session = getSession();
  const admin = isAdmin(session);
  const bound = leaf(session?.tenant ?? "");
  const { tenant: picked, tenants } = useTenant();
  const [displayName, setDisplayName] = useState("");
  const [role, setRole] = useState<Role>(Role.UNSPECIFIED);
  const [kind, setKind] = useState<KeyKind>(KeyKind.USER);
  const [kindTouched, setKindTouched] = useState(false);
  const [tenant, setTenant] = useState(bound || picked || "");
  const [expiry, setExpiry] = useState<Expiry>("never");
  const [expiresOn, setExpiresOn] = useState("");
  const [touched, setTouched] = useState(false);

  const roles = admin ? [Role.ADMIN, Role.EDITOR, Role.VIEWER, Role.AGENT] : [Role.EDITOR, Role.VIEWER, Role.AGENT];
  // Admin keys are never tenant-bound; a tenant-bound caller hands out keys of its tenant only;
  // only an admin may create agent (or any) keys valid in every tenant.
  const tenantFixed = role === Role.ADMIN || !!bound;
  const everyAllowed = !bound && (admin || role !== Role.AGENT);

  const problems = {
    display_name: !displayName.trim()
      ? "Give the key a name that says who or what uses it."
      : displayName.length > 200
        ? "Use at most 200 characters."
        : undefined,
    role: role === Role.UNSPECIFIED ? "Choose a role." : undefined,
    tenant:
      role === Role.ADMIN || bound
        ? undefined
        : !tenant
          ? "Choose the tenant this key may use, or every tenant."
          : tenant === EVERY_TENANT && !everyAllowed
            ? "Only an admin can create an agent key for every tenant; choose a tenant."
            : undefined,
    expire_time:
      expiry === "date" && !expiresOn
        ? "Choose the last day the key is valid."
        : expiry === "date" && (expiryDate(expiry, expiresOn)?.getTime() ?? 0) <= Date.now()
          ? "Choose a day in the future."
          : undefined,
  };

  const save = useAction(async () => {
    const tenantName = role === Role.ADMIN ? "" : bound ? `tenants/${bound}` : tenant === EVERY_TENANT ? "" : `tenants/${tenant}`;
    const expires = expiryDate(expiry, expiresOn);
    const r = await api.keys.createApiKey({
      apiKey: create(ApiKeySchema, {
        displayName: displayName.trim(),
        kind,
        role,
        tenant: tenantName,
        expireTime: expires ? timestampFromDate(expires) : undefined,
      }),
    });
    onCreated(r);
  });

  const show = (field: keyof typeof problems) => (touched ? problems[field] : undefined) ?? fieldError(save.error, field);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setTouched(true);
    if (Object.values(problems).some(Boolean)) return;
    await save.run();
  }

  function chooseRole(value: Role) {
    setRole(value);
    if (!kindTouched) setKind(value === Role.AGENT ? KeyKind.SERVICE : KeyKind.USER);
    if (value === Role.AGENT && tenant === EVERY_TENANT && !admin) setTenant("");
  }

  return (
    <form onSubmit={submit} noValidate>
      <Field label="Display name" hint="Who or what uses the key, e.g. “CI exporter” or “Jane’s laptop”." error={show("display_name")}>
        {(p) => <input {...p} name="display_name" autoFocus value={displayName} onChange={(e) => setDisplayName(e.target.value)} />}
      </Field>
      <div className="grid-2">
        <Field label="Role" hint={ROLE_HINT[role]} error={show("role")}>
          {(p) => (
            <select {...p} name="role" value={role} onChange={(e) => chooseRole(Number(e.target.value) as Role)}>
              <option value={Role.UNSPECIFIED}>Choose a role…</option>
              {roles.map((r) => (
                <option key={r} value={r}>
                  {ROLE_TEXT[r]}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label="Kind" hint="Service keys are for agent daemons; user keys for people and their tools." error={fieldError(save.error, "kind")}>
          {(p) => (
            <select
              {...p}
              name="kind"
              value={kind}
              onChange={(e) => {
                setKindTouched(true);
                setKind(Number(e.target.value) as KeyKind);
              }}
            >
              <option value={KeyKind.USER}>User</option>
              <option value={KeyKind.SERVICE}>Service</option>
            </select>
          )}
        </Field>
      </div>
      <div className="grid-2">
        <Field
          label="Tenant"
          hint={role === Role.ADMIN ? "Admin keys are valid in every tenant." : bound ? "Your keys are bound to your tenant." : "The key can reach only this tenant’s data."}
          error={show("tenant")}
        >
          {(p) =>
            tenantFixed ? (
              <select {...p} name="tenant" value="" disabled>
                <option value="">{role === Role.ADMIN ? "Every tenant" : bound}</option>
              </select>
            ) : (
              <select {...p} name="tenant" value={tenant} onChange={(e) => setTenant(e.target.value)}>
                <option value="">Choose a tenant…</option>
                {everyAllowed && <option value={EVERY_TENANT}>Every tenant (not bound)</option>}
                {tenants.map((t) => (
                  <option key={t.name} value={leaf(t.name)}>
                    {t.displayName ? `${t.displayName} (${leaf(t.name)})` : leaf(t.name)}
                  </option>
                ))}
              </select>
            )
          }
        </Field>
        <Field label="Expires" error={expiry === "date" ? undefined : show("expire_time")}>
          {(p) => (
            <select {...p} name="expiry" value={expiry} onChange={(e) => setExpiry(e.target.value as Expiry)}>
              <option value="never">Never</option>
              <option value="30">In 30 days</option>
              <option value="90">In 90 days</option>
              <option value="365">In a year</option>
              <option value="date">On a date…</option>
            </select>
          )}
        </Field>
      </div>
      {expiry === "date" && (
        <Field label="Valid through" hint="The key stops working at the end of this day (your time zone)." error={show("expire_time")}>
          {(p) => <input {...p} type="date" name="expires_on" value={expiresOn} onChange={(e) => setExpiresOn(e.target.value)} />}
        </Field>
      )}
      <ErrorNote error={save.error} />
      <div className="form-actions">
        <SubmitButton busy={save.busy} label="Create key" busyLabel="Creating…" />
      </div>
    </form>
  );
}
