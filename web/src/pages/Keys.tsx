// API keys: list (scoped to the top-bar tenant), create, rotate and revoke. A new secret is shown
// once, held only in this component's state: leaving the page or reloading forgets it.
import { useState, type FormEvent } from "react";
import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { KeyKind, type ApiKey, type RotateApiKeyResponse } from "@sdk/keys_pb";
import { api } from "../api";
import { CreateKeyForm, ROLE_TEXT } from "../components/KeysCreate";
import { Badge, ConfirmButton, CopyButton, Dialog, EmptyState, ErrorNote, Field, Loading, PageHeader, SubmitButton } from "../components/ui";
import { ago, date, leaf, when } from "../format";
import { useAction, useLoad, useTick } from "../hooks";
import { canWrite, getSession } from "../session";
import { useTenant } from "../tenant";
import "./Keys.css";

interface Shown {
  title: string;
  secret: string;
  key: ApiKey;
  note?: string;
}

const KIND_TEXT: Record<number, string> = { [KeyKind.USER]: "User", [KeyKind.SERVICE]: "Service" };

async function listKeys(tenant: string, kind: KeyKind, showRevoked: boolean): Promise<ApiKey[]> {
  const all: ApiKey[] = [];
  let pageToken = "";
  do {
    const r = await api.keys.listApiKeys({ pageSize: 500, pageToken, tenant: tenant ? `tenants/${tenant}` : "", kind, showRevoked });
    all.push(...r.apiKeys);
    pageToken = r.nextPageToken;
  } while (pageToken);
  return all;
}

function keyState(k: ApiKey, now: number): { text: string; tone: "ok" | "warn" | "bad" | "off"; title?: string } {
  const revoked = date(k.revokeTime);
  const expires = date(k.expireTime);
  if (revoked && revoked.getTime() <= now) return { text: "Revoked", tone: "bad", title: `Revoked ${revoked.toLocaleString()}` };
  if (expires && expires.getTime() <= now) return { text: "Expired", tone: "off", title: `Expired ${expires.toLocaleString()}` };
  if (revoked) return { text: "Retiring", tone: "warn", title: `Rotated: valid until ${revoked.toLocaleString()}` };
  return { text: "Active", tone: "ok" };
}

function SecretPanel({ shown, onDone }: { shown: Shown; onDone: () => void }) {
  return (
    <section className="panel keys-secret" aria-labelledby="keys-secret-title">
      <h2 id="keys-secret-title">{shown.title}</h2>
      <p className="keys-warning" role="status">
        <strong>Store it now — it cannot be shown again.</strong> Floe keeps only a hash of the secret; if it is lost, rotate the key.
      </p>
      <div className="secret">
        <code aria-label="Secret" className="keys-secret-value">
          {shown.secret}
        </code>
        <CopyButton text={shown.secret} label="Copy secret" />
      </div>
      <p className="small muted">
        Key <span className="mono">{leaf(shown.key.name)}</span> ({shown.key.prefix}). Send it as <code>Authorization: Bearer …</code>, or
        use it with the CLI: <code>FLOE_API_KEY=… floe whoami</code>.
      </p>
      {shown.note && <p className="notice">{shown.note}</p>}
      <div className="form-actions">
        <button type="button" onClick={onDone}>
          I have stored it
        </button>
      </div>
    </section>
  );
}

const GRACE: { label: string; seconds: number }[] = [
  { label: "Revoke the old key at once", seconds: 0 },
  { label: "1 hour", seconds: 3600 },
  { label: "1 day", seconds: 86400 },
  { label: "7 days (the most allowed)", seconds: 7 * 86400 },
];

function RotateForm({ apiKey, onRotated }: { apiKey: ApiKey; onRotated: (r: RotateApiKeyResponse) => void }) {
  const [grace, setGrace] = useState(0);
  const rotate = useAction(async () => {
    const r = await api.keys.rotateApiKey({
      name: apiKey.name,
      gracePeriod: grace ? create(DurationSchema, { seconds: BigInt(grace) }) : undefined,
    });
    onRotated(r);
  });
  async function submit(e: FormEvent) {
    e.preventDefault();
    await rotate.run();
  }
  return (
    <form onSubmit={submit} noValidate>
      <p>
        A new key with the same name, role and tenant is issued with a new secret. The old key (
        <span className="mono">{apiKey.prefix}</span>) keeps working during the grace period, so the new secret can be rolled out first.
      </p>
      <Field label="Grace period" hint="How long the old secret stays valid after rotation.">
        {(p) => (
          <select {...p} name="grace" autoFocus value={grace} onChange={(e) => setGrace(Number(e.target.value))}>
            {GRACE.map((g) => (
              <option key={g.seconds} value={g.seconds}>
                {g.label}
              </option>
            ))}
          </select>
        )}
      </Field>
      <ErrorNote error={rotate.error} />
      <div className="form-actions">
        <SubmitButton busy={rotate.busy} label="Rotate key" busyLabel="Rotating…" />
      </div>
    </form>
  );
}

function KeyRow({ k, now, writable, onRotate, onChanged }: { k: ApiKey; now: number; writable: boolean; onRotate: () => void; onChanged: () => void }) {
  const state = keyState(k, now);
  const live = state.text === "Active" || state.text === "Retiring";
  const revoke = useAction(async () => {
    await api.keys.revokeApiKey({ name: k.name });
    onChanged();
  });
  const id = leaf(k.name);
  const label = k.displayName || id;
  return (
    <tr>
      <th scope="row">
        <strong>{label}</strong>
        <div className="muted small mono" title={`keys/${id}`}>
          <span className="sr-only">Prefix </span>
          {k.prefix}
        </div>
        {k.rotatedFrom && <div className="muted small">replaces {leaf(k.rotatedFrom)}</div>}
      </th>
      <td>{KIND_TEXT[k.kind] ?? "–"}</td>
      <td>{ROLE_TEXT[k.role] ?? "–"}</td>
      <td>{k.tenant ? leaf(k.tenant) : <span className="muted">every tenant</span>}</td>
      <td className="small" title={when(k.createTime)}>
        {ago(k.createTime, now)}
      </td>
      <td className="small" title={when(k.lastUsedTime)}>
        {ago(k.lastUsedTime, now)}
      </td>
      <td className="small">{date(k.expireTime) ? when(k.expireTime) : <span className="muted">never</span>}</td>
      <td>
        <span title={state.title}>
          <Badge tone={state.tone}>{state.text}</Badge>
        </span>
      </td>
      <td>
        {writable && live && (
          <div className="row-actions">
            <button type="button" className="secondary" onClick={onRotate} aria-label={`Rotate ${label}`}>
              Rotate
            </button>
            <ConfirmButton question={`Revoke ${label}? Calls with it fail at once.`} busy={revoke.busy} onConfirm={() => revoke.run()}>
              Revoke
            </ConfirmButton>
          </div>
        )}
        <ErrorNote error={revoke.error} />
      </td>
    </tr>
  );
}

export function Keys() {
  const { tenant } = useTenant();
  const [kind, setKind] = useState<KeyKind>(KeyKind.UNSPECIFIED);
  const [showRevoked, setShowRevoked] = useState(false);
  const keys = useLoad(() => listKeys(tenant, kind, showRevoked), [tenant, kind, showRevoked]);
  const [creating, setCreating] = useState(false);
  const [rotating, setRotating] = useState<ApiKey | null>(null);
  const [shown, setShown] = useState<Shown | null>(null);
  const writable = canWrite(getSession());
  useTick(30_000); // "last used 2m ago" stays true
  const now = Date.now();
  const scope = tenant ? `tenant ${tenant}` : "every tenant";

  return (
    <section className="keys">
      <PageHeader title="API keys" sub={`Credentials for the SDK, the CLI, grpcurl and agents — ${scope}.`}>
        {writable && (
          <button type="button" onClick={() => setCreating(true)}>
            New API key
          </button>
        )}
      </PageHeader>
      {shown && <SecretPanel shown={shown} onDone={() => setShown(null)} />}
      <div className="keys-filters" role="group" aria-label="Filter keys">
        <label>
          <span>Kind</span>
          <select value={kind} onChange={(e) => setKind(Number(e.target.value) as KeyKind)} aria-label="Kind">
            <option value={KeyKind.UNSPECIFIED}>All kinds</option>
            <option value={KeyKind.USER}>User</option>
            <option value={KeyKind.SERVICE}>Service</option>
          </select>
        </label>
        <label className="check">
          <input type="checkbox" checked={showRevoked} onChange={(e) => setShowRevoked(e.target.checked)} />
          <span>Show revoked and expired</span>
        </label>
      </div>
      <ErrorNote error={keys.error} />
      {keys.loading && !keys.data ? (
        <Loading what="Loading API keys" />
      ) : keys.data && keys.data.length === 0 ? (
        <EmptyState title={showRevoked || kind ? "No keys match these filters" : "No API keys yet"}>
          <p>
            An API key lets a program call Floe: the SDK, the CLI, grpcurl or an agent. Create one here, or with the CLI:{" "}
            <code>floe keys create --role editor{tenant ? ` --tenant tenants/${tenant}` : ""}</code>
          </p>
          {writable && (
            <button type="button" onClick={() => setCreating(true)}>
              Create an API key
            </button>
          )}
        </EmptyState>
      ) : keys.data ? (
        <div className="table-wrap">
          <table className="keys-table">
            <thead>
              <tr>
                <th scope="col">Name and prefix</th>
                <th scope="col">Kind</th>
                <th scope="col">Role</th>
                <th scope="col">Tenant</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                <th scope="col">State</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {keys.data.map((k) => (
                <KeyRow key={k.name} k={k} now={now} writable={writable} onRotate={() => setRotating(k)} onChanged={keys.reload} />
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <Dialog open={creating} title="New API key" onClose={() => setCreating(false)}>
        <CreateKeyForm
          onCreated={(r) => {
            setCreating(false);
            if (r.apiKey) setShown({ title: `Key “${r.apiKey.displayName || leaf(r.apiKey.name)}” created`, secret: r.secret, key: r.apiKey });
            keys.reload();
          }}
        />
      </Dialog>
      <Dialog open={!!rotating} title={`Rotate ${rotating ? rotating.displayName || leaf(rotating.name) : ""}`} onClose={() => setRotating(null)}>
        {rotating && (
          <RotateForm
            apiKey={rotating}
            onRotated={(r) => {
              setRotating(null);
              const until = date(r.previous?.revokeTime);
              const note =
                until && until.getTime() > Date.now() + 1000
                  ? `The old key ${r.previous?.prefix ?? ""} stays valid until ${until.toLocaleString()} (grace period); switch to the new secret before then.`
                  : `The old key ${r.previous?.prefix ?? ""} was revoked at once.`;
              if (r.apiKey) setShown({ title: `Key “${r.apiKey.displayName || leaf(r.apiKey.name)}” rotated: new secret`, secret: r.secret, key: r.apiKey, note });
              keys.reload();
            }}
          />
        )}
      </Dialog>
    </section>
  );
}
