import { useState, type FormEvent } from "react";
import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { Tenant_State, TenantSchema, type Tenant } from "@sdk/tenants_pb";
import { api } from "../api";
import { Badge, ConfirmButton, Dialog, EmptyState, ErrorNote, Field, Loading, PageHeader, SubmitButton } from "../components/ui";
import { fieldError } from "../errors";
import { leaf, when } from "../format";
import { useAction, useLoad } from "../hooks";
import { href } from "../router";
import { listTenants, useTenant } from "../tenant";
import { idProblem } from "../validate";

function CreateTenant({ onCreated }: { onCreated: (t: Tenant) => void }) {
  const [id, setId] = useState("");
  const [displayName, setDisplayName] = useState("");
  const [description, setDescription] = useState("");
  const [touched, setTouched] = useState(false);
  const save = useAction(async () => {
    const r = await api.tenants.createTenant({
      tenantId: id,
      tenant: create(TenantSchema, { displayName: displayName.trim(), description: description.trim() }),
    });
    if (r.tenant) onCreated(r.tenant);
  });
  const idError = (touched ? idProblem(id) : undefined) ?? fieldError(save.error, "tenant_id");
  async function submit(e: FormEvent) {
    e.preventDefault();
    setTouched(true);
    if (idProblem(id)) return;
    await save.run();
  }
  return (
    <form onSubmit={submit} noValidate>
      <Field label="Tenant id" hint="Lowercase letters, digits and '-'; it cannot be changed later." error={idError}>
        {(p) => <input {...p} name="tenant_id" autoFocus value={id} onChange={(e) => setId(e.target.value.trim())} />}
      </Field>
      <Field label="Display name" error={fieldError(save.error, "display_name")}>
        {(p) => <input {...p} name="display_name" value={displayName} onChange={(e) => setDisplayName(e.target.value)} />}
      </Field>
      <Field label="Description" error={fieldError(save.error, "description")}>
        {(p) => <textarea {...p} name="description" rows={2} value={description} onChange={(e) => setDescription(e.target.value)} />}
      </Field>
      <ErrorNote error={save.error} />
      <div className="form-actions">
        <SubmitButton busy={save.busy} label="Create tenant" busyLabel="Creating…" />
      </div>
    </form>
  );
}

function TenantRow({ t, onChanged }: { t: Tenant; onChanged: () => void }) {
  const active = t.state === Tenant_State.ACTIVE;
  const toggle = useAction(async () => {
    await api.tenants.updateTenant({
      tenant: { ...t, state: active ? Tenant_State.SUSPENDED : Tenant_State.ACTIVE },
      updateMask: create(FieldMaskSchema, { paths: ["state"] }),
    });
    onChanged();
  });
  const remove = useAction(async () => {
    await api.tenants.deleteTenant({ name: t.name, etag: t.etag });
    onChanged();
  });
  const id = leaf(t.name);
  return (
    <tr>
      <td>
        <a href={href("datasets") + "?tenant=" + encodeURIComponent(id)}>
          <strong>{t.displayName || id}</strong>
        </a>
        <div className="muted small mono">{t.name}</div>
        {t.description && <div className="small">{t.description}</div>}
      </td>
      <td>{active ? <Badge tone="ok">Active</Badge> : <Badge tone="warn">Suspended</Badge>}</td>
      <td className="small">{when(t.createTime)}</td>
      <td>
        <div className="row-actions">
        <button type="button" className="secondary" disabled={toggle.busy} onClick={() => toggle.run()}>
          {active ? "Suspend" : "Activate"}
        </button>
        <ConfirmButton question={`Delete ${id}?`} busy={remove.busy} onConfirm={() => remove.run()}>
          Delete
        </ConfirmButton>
        </div>
        <ErrorNote error={toggle.error ?? remove.error} />
      </td>
    </tr>
  );
}

export function Tenants() {
  const tenants = useLoad(listTenants, []);
  const { reloadTenants } = useTenant();
  const [creating, setCreating] = useState(false);
  const changed = () => {
    tenants.reload();
    reloadTenants();
  };
  return (
    <section aria-labelledby="page-title">
      <PageHeader title="Tenants" sub="Each tenant's data, keys and queries are isolated from every other's.">
        <button type="button" onClick={() => setCreating(true)}>
          New tenant
        </button>
      </PageHeader>
      <ErrorNote error={tenants.error} />
      {tenants.loading && !tenants.data ? (
        <Loading what="Loading tenants" />
      ) : tenants.data && tenants.data.length === 0 ? (
        <EmptyState title="No tenants yet">
          <p>A tenant owns datasets and API keys. Create one to start collecting data.</p>
          <button type="button" onClick={() => setCreating(true)}>
            Create the first tenant
          </button>
        </EmptyState>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Tenant</th>
                <th scope="col">State</th>
                <th scope="col">Created</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {tenants.data?.map((t) => <TenantRow key={t.name} t={t} onChanged={changed} />)}
            </tbody>
          </table>
        </div>
      )}
      <Dialog open={creating} title="New tenant" onClose={() => setCreating(false)}>
        <CreateTenant
          onCreated={() => {
            setCreating(false);
            changed();
          }}
        />
      </Dialog>
    </section>
  );
}
