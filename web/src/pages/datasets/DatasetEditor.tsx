// #/datasets/new and #/datasets/{tenant}/{dataset}: the dataset form (source, proxy assignment,
// flags, labels), its transformation list with a live preview, and its known fields.
import { useCallback, useEffect, useMemo, useState, type FormEvent, type ReactNode } from "react";
import { Code } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { AgentKind } from "@sdk/agent_pb";
import type { Dataset, DatasetFields, PreviewTransformationsResponse } from "@sdk/datasets_pb";
import type { Agent } from "@sdk/fleet_pb";
import { api } from "../../api";
import { Badge, ConfirmButton, ErrorNote, Field, Loading, PageHeader, SubmitButton } from "../../components/ui";
import { fieldError, type Problem } from "../../errors";
import { leaf, when } from "../../format";
import { useAction, useLoad } from "../../hooks";
import { href, navigate } from "../../router";
import { canWrite, getSession } from "../../session";
import { useTenant } from "../../tenant";
import { listDatasets } from "./DatasetList";
import { KeyValueRows } from "./KeyValueRows";
import { KnownFields } from "./KnownFields";
import { changedPaths, draftProblems, emptyDraft, fromDataset, localPath, toDataset, type Draft, type ProxyMode } from "./model";
import { Preview } from "./Preview";
import { DATA_HINTS, SOURCES, sourceInfo } from "./sources";
import { TransformEditor } from "./TransformEditor";

// A message for the next page shown (after create, the edit page says so).
let flash = "";

async function listProxies(signal: AbortSignal): Promise<Agent[]> {
  const all: Agent[] = [];
  let pageToken = "";
  do {
    const r = await api.fleet.listAgents({ kind: AgentKind.PROXY, pageSize: 500, pageToken }, { signal });
    all.push(...r.agents);
    pageToken = r.nextPageToken;
  } while (pageToken);
  return all;
}

// "is required" -> "Port is required"; sentences from the server are kept as they are.
function sentence(label: string, msg: string | undefined): string | undefined {
  if (!msg) return undefined;
  return /^[a-z]/.test(msg) ? `${label} ${msg}` : msg;
}

export function DatasetEditor({ tenant, id, initialTenant }: { tenant?: string; id?: string; initialTenant?: string }) {
  const name = tenant && id ? `tenants/${tenant}/datasets/${id}` : "";
  const loaded = useLoad(
    async (signal) => (name ? (await api.datasets.getDataset({ name }, { signal })).dataset : undefined),
    [name],
  );
  const [current, setCurrent] = useState<Dataset>();
  const [notice, setNotice] = useState(() => {
    const f = flash;
    flash = "";
    return f;
  });
  useEffect(() => setCurrent(loaded.data), [loaded.data]);
  if (!name) return <DatasetForm initial={emptyDraft(initialTenant ?? "")} notice="" onNotice={setNotice} />;
  if (loaded.error && !current) {
    return (
      <section aria-labelledby="page-title">
        <PageHeader title={`Dataset ${tenant}/${id}`} />
        <ErrorNote error={loaded.error} />
        <p>
          <a href={href("datasets")}>Back to datasets</a>
        </p>
      </section>
    );
  }
  if (!current) return <Loading what="Loading dataset" />;
  return (
    <DatasetForm
      key={current.etag}
      base={current}
      initial={fromDataset(current)}
      notice={notice}
      onNotice={setNotice}
      onSaved={(ds) => setCurrent(ds)}
      onReload={() => {
        setNotice("");
        loaded.reload();
      }}
    />
  );
}

function DatasetForm({
  base,
  initial,
  notice,
  onNotice,
  onSaved,
  onReload,
}: {
  base?: Dataset;
  initial: Draft;
  notice: string;
  onNotice: (s: string) => void;
  onSaved?: (ds: Dataset) => void;
  onReload?: () => void;
}) {
  const creating = !base;
  const writable = canWrite(getSession());
  const { tenants } = useTenant();
  const [draft, setDraft] = useState<Draft>(initial);
  const [touched, setTouched] = useState(false);
  const [previewResult, setPreviewResult] = useState<PreviewTransformationsResponse>();
  const [previewProblem, setPreviewProblem] = useState<Problem | null>(null);
  const [otherAgent, setOtherAgent] = useState(false);
  const proxies = useLoad(listProxies, []);
  const routeTargets = useLoad(
    (signal) => (draft.tenant ? listDatasets(`tenants/${draft.tenant}`, signal) : Promise.resolve([])),
    [draft.tenant],
  );
  const fields = useLoad(
    async (signal) =>
      base ? (await api.datasets.getDatasetFields({ name: `${base.name}/fields` }, { signal })).fields : undefined,
    [base?.name],
  );
  const set = (patch: Partial<Draft>) => {
    setDraft((d) => ({ ...d, ...patch }));
    onNotice("");
  };

  // A tenant-bound user, or a single tenant: nothing to choose.
  useEffect(() => {
    if (creating && !draft.tenant && tenants.length === 1) set({ tenant: leaf(tenants[0].name) });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [tenants.length]);

  const save = useAction(async () => {
    if (!base) {
      const r = await api.datasets.createDataset({
        parent: `tenants/${draft.tenant}`,
        datasetId: draft.id,
        dataset: toDataset(draft),
      });
      const ds = r.dataset!;
      flash = `Created ${ds.name}.`;
      navigate(href("datasets", draft.tenant, draft.id));
      return;
    }
    const next = toDataset(draft, base);
    const paths = changedPaths(base, next);
    if (paths.length === 0) {
      onNotice("Nothing to save: no field changed.");
      return;
    }
    const r = await api.datasets.updateDataset({ dataset: next, updateMask: create(FieldMaskSchema, { paths }) });
    onNotice(`Saved ${paths.length === 1 ? paths[0].replace(/_/g, " ") : `${paths.length} changes`}.`);
    onSaved?.(r.dataset!);
  });

  const client = useMemo(() => draftProblems(draft, creating), [draft, creating]);
  const errorFor = (path: string, label: string): string | undefined =>
    sentence(label, (touched ? client[path] : undefined) ?? fieldError(save.error, path));

  // Step problems: from the last save and from the live preview (which validates the steps too).
  const stepFields = useMemo(() => {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(previewProblem?.fields ?? {})) out[localPath(k)] = v;
    for (const [k, v] of Object.entries(save.error?.fields ?? {})) {
      const p = localPath(k);
      if (p.startsWith("transformations")) out[p] = v;
    }
    return out;
  }, [previewProblem, save.error]);
  const stepErrorAt = useCallback(
    (path: string): string | undefined => {
      if (path.endsWith("[*]")) {
        const prefix = path.slice(0, -3) + "[";
        return Object.entries(stepFields).find(([k]) => k.startsWith(prefix))?.[1];
      }
      if (path.endsWith(".*")) {
        const prefix = path.slice(0, -1);
        return Object.entries(stepFields).find(([k]) => k.startsWith(prefix))?.[1];
      }
      return stepFields[path];
    },
    [stepFields],
  );

  const info = sourceInfo(draft.sourceType);
  const optionErrors: Record<string, string | undefined> = {};
  for (const o of draft.options) {
    const key = o.key.trim();
    if (key) optionErrors[key] = (touched ? client[`source.options.${key}`] : undefined) ?? fieldError(save.error, `source.options.${key}`);
  }
  // Problems with options that have no row (a required one left out).
  const missingOptions = Object.entries({
    ...(touched ? client : {}),
    ...Object.fromEntries(Object.entries(save.error?.fields ?? {}).map(([k, v]) => [localPath(k), v])),
  })
    .filter(([k]) => k.startsWith("source.options."))
    .map(([k, v]) => [k.slice("source.options.".length), v] as const)
    .filter(([k]) => !(k in optionErrors));

  // Server violations that no input shows: listed with the save error.
  const shownPrefixes = [
    "dataset_id",
    "parent",
    "display_name",
    "description",
    "source.",
    "data_hint",
    "proxy",
    "retention",
    "labels",
    "destination",
    "transformations",
  ];
  const unshown = Object.entries(save.error?.fields ?? {}).filter(
    ([k]) => !shownPrefixes.some((p) => localPath(k).startsWith(p)),
  );

  async function submit(e: FormEvent) {
    e.preventDefault();
    setTouched(true);
    onNotice("");
    if (Object.keys(client).length > 0) {
      window.requestAnimationFrame(() => document.querySelector<HTMLElement>('.ds-form [aria-invalid="true"]')?.focus());
      return;
    }
    await save.run();
  }

  const remove = useAction(async () => {
    if (!base) return;
    await api.datasets.deleteDataset({ name: base.name, etag: base.etag });
    navigate(href("datasets"));
  });

  const dirty = base ? changedPaths(base, toDataset(draft, base)).length > 0 : true;
  const fieldNames = useMemo(() => {
    const s = new Set<string>();
    for (const f of fields.data?.fields ?? []) s.add(f.name);
    for (const r of previewResult?.records.slice(0, 50) ?? []) for (const k of Object.keys(r)) s.add(k);
    for (const e of previewResult?.errors.slice(0, 50) ?? []) for (const k of Object.keys(e.record ?? {})) s.add(k);
    return [...s].sort();
  }, [fields.data, previewResult]);
  const previewName =
    draft.tenant && /^[a-z][a-z0-9-]{0,61}[a-z0-9]$/.test(draft.id)
      ? `tenants/${draft.tenant}/datasets/${draft.id}`
      : draft.tenant
        ? `tenants/${draft.tenant}/datasets/draft`
        : "";
  const title = creating ? "New dataset" : base.displayName || leaf(base.name);
  const conflict = save.error?.code === Code.Aborted;

  return (
    <section aria-labelledby="page-title" className="ds-page ds-editor">
      <PageHeader
        title={creating ? title : `Dataset ${title}`}
        sub={
          creating ? (
            "Where a stream of records comes from, how it is transformed and where it is stored."
          ) : (
            <>
              <span className="mono">{base.name}</span> · updated {when(base.updateTime)}{" "}
              {base.active ? <Badge tone="ok">Active</Badge> : <Badge tone="off">Inactive</Badge>}{" "}
              {base.testing && <Badge tone="info">Testing</Badge>}
            </>
          )
        }
      >
        <a className="button secondary" href={href("datasets")}>
          All datasets
        </a>
        {!creating && writable && (
          <ConfirmButton question={`Delete ${leaf(base.name)}?`} busy={remove.busy} onConfirm={() => remove.run()}>
            Delete dataset
          </ConfirmButton>
        )}
      </PageHeader>
      {remove.error &&
        (remove.error.code === Code.Aborted ? <ConflictNote onReload={onReload} /> : <ErrorNote error={remove.error} />)}
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      {!writable && <p className="notice">Your role can read datasets but not change them.</p>}
      <datalist id="ds-field-names">
        {fieldNames.map((f) => (
          <option key={f} value={f} />
        ))}
      </datalist>
      <datalist id="ds-route-targets">
        {(routeTargets.data ?? [])
          .filter((d) => d.name !== base?.name)
          .map((d) => (
            <option key={d.name} value={d.name} />
          ))}
      </datalist>

      <form onSubmit={submit} noValidate className="ds-form">
        <fieldset disabled={!writable} className="ds-plain">
          <Panel title="Dataset">
            <div className="grid-2">
              {creating ? (
                <Field
                  label="Dataset id"
                  hint="Lowercase letters, digits and '-'; part of its name and object paths, it cannot be changed later."
                  error={errorFor("dataset_id", "Dataset id")}
                >
                  {(p) => (
                    <input {...p} name="dataset_id" autoFocus value={draft.id} onChange={(e) => set({ id: e.target.value.trim() })} />
                  )}
                </Field>
              ) : (
                <div className="field">
                  <span className="ds-label">Dataset id</span>
                  <span className="mono">{draft.id}</span>
                </div>
              )}
              {creating ? (
                <Field label="Tenant" error={errorFor("parent", "Tenant")}>
                  {(p) => (
                    <select {...p} value={draft.tenant} onChange={(e) => set({ tenant: e.target.value })}>
                      <option value="">Choose a tenant…</option>
                      {tenants.map((t) => (
                        <option key={t.name} value={leaf(t.name)}>
                          {t.displayName ? `${t.displayName} (${leaf(t.name)})` : leaf(t.name)}
                        </option>
                      ))}
                    </select>
                  )}
                </Field>
              ) : (
                <div className="field">
                  <span className="ds-label">Tenant</span>
                  <span>{draft.tenant}</span>
                </div>
              )}
            </div>
            <Field label="Display name" error={errorFor("display_name", "Display name")}>
              {(p) => <input {...p} value={draft.displayName} onChange={(e) => set({ displayName: e.target.value })} />}
            </Field>
            <Field label="Description" error={errorFor("description", "Description")}>
              {(p) => <textarea {...p} rows={2} value={draft.description} onChange={(e) => set({ description: e.target.value })} />}
            </Field>
          </Panel>

          <Panel title="Source" sub="What the edge proxy listens with.">
            <div className="grid-2">
              <Field label="Source type" hint={info?.summary} error={errorFor("source.type", "Source type")}>
                {(p) => (
                  <select
                    {...p}
                    value={draft.sourceType}
                    onChange={(e) => {
                      const t = Number(e.target.value);
                      const next = sourceInfo(t);
                      const oldHint = info?.dataHint;
                      set({
                        sourceType: t,
                        dataHint: !draft.dataHint || draft.dataHint === oldHint ? (next?.dataHint ?? "") : draft.dataHint,
                        bindHost: next?.transport && !draft.bindHost ? "0.0.0.0" : draft.bindHost,
                        options: draft.options.filter((o) => o.key.trim() || o.value),
                      });
                    }}
                  >
                    {!info && <option value={0}>Choose…</option>}
                    {SOURCES.map((s) => (
                      <option key={s.type} value={s.type}>
                        {s.label} ({s.id})
                      </option>
                    ))}
                  </select>
                )}
              </Field>
              <Field
                label="Data hint"
                hint={`The parser pipers read the records with; ${info ? `${info.id} sources default to ${info.dataHint}` : "it defaults from the source type"}.`}
                error={errorFor("data_hint", "Data hint")}
              >
                {(p) => (
                  <select {...p} value={draft.dataHint} onChange={(e) => set({ dataHint: e.target.value })}>
                    <option value="">Default for the source type{info ? ` (${info.dataHint})` : ""}</option>
                    {DATA_HINTS.map((h) => (
                      <option key={h.id} value={h.id}>
                        {h.label}
                      </option>
                    ))}
                  </select>
                )}
              </Field>
            </div>
            {info?.transport ? (
              <div className="grid-2">
                <Field
                  label="Bind host"
                  hint="0.0.0.0 listens on every address of the proxy; 127.0.0.1 only locally."
                  error={errorFor("source.bind_host", "Bind host")}
                >
                  {(p) => <input {...p} className="mono" value={draft.bindHost} onChange={(e) => set({ bindHost: e.target.value.trim() })} />}
                </Field>
                <Field
                  label="Port"
                  hint={`${info.transport.toUpperCase()} port the proxy binds, 1-65535; unique per proxy.`}
                  error={errorFor("source.port", "Port")}
                >
                  {(p) => (
                    <input
                      {...p}
                      name="port"
                      inputMode="numeric"
                      className="mono"
                      value={draft.port}
                      onChange={(e) => set({ port: e.target.value.trim() })}
                    />
                  )}
                </Field>
              </div>
            ) : (
              info && <p className="small muted">NATS subscriptions bind no port: set the server URL and subject as options.</p>
            )}
            <div className="field">
              <span className="ds-label" id="ds-options-label">
                Source options
              </span>
              <KeyValueRows
                rows={draft.options}
                onChange={(options) => set({ options })}
                noun="option"
                errors={optionErrors}
                keySuggestions={info?.options.map((o) => o.name)}
                secretKeys={new Set(info?.options.filter((o) => o.kind === "secret").map((o) => o.name))}
              />
              {missingOptions.map(([k, v]) => (
                <small key={k} className="field-error" role="alert">
                  Option {k} {v}
                </small>
              ))}
              {info && <OptionHints info={info} present={new Set(draft.options.map((o) => o.key.trim()))} onAdd={(key, value) => set({ options: [...draft.options, { key, value }] })} />}
            </div>
          </Panel>

          <Panel title="Collection" sub="Which proxy collects it, and how it is kept.">
            <fieldset className="ds-radio">
              <legend>Proxy assignment</legend>
              {(
                [
                  ["agent", "One proxy, by agent name"],
                  ["selector", "Every proxy whose labels match"],
                  ["none", "Not assigned (no proxy collects it)"],
                ] as [ProxyMode, string][]
              ).map(([mode, label]) => (
                <label key={mode} className="check">
                  <input type="radio" name="proxy-mode" value={mode} checked={draft.proxyMode === mode} onChange={() => set({ proxyMode: mode })} />
                  {label}
                </label>
              ))}
            </fieldset>
            {draft.proxyMode === "agent" && (
              <ProxyPicker
                value={draft.proxyAgent}
                onChange={(proxyAgent) => set({ proxyAgent })}
                proxies={proxies.data}
                loadError={proxies.error}
                other={otherAgent}
                setOther={setOtherAgent}
                error={errorFor("proxy.agent", "Proxy")}
              />
            )}
            {draft.proxyMode === "selector" && (
              <div className="field">
                <span className="ds-label">Proxy labels</span>
                <KeyValueRows
                  rows={draft.selector}
                  onChange={(selector) => set({ selector })}
                  noun="selector label"
                  keyPlaceholder="site"
                  valuePlaceholder="paris"
                />
                {errorFor("proxy.selector.match_labels", "The selector") && (
                  <small className="field-error" role="alert">
                    {errorFor("proxy.selector.match_labels", "The selector")}
                  </small>
                )}
                <small className="hint">Proxies whose labels contain every pair collect the dataset.</small>
              </div>
            )}
            <div className="ds-checks">
              <label className="check">
                <input type="checkbox" checked={draft.active} onChange={(e) => set({ active: e.target.checked })} />
                Active <span className="muted small">— collected and ingested; inactive datasets refuse ingest.</span>
              </label>
              <label className="check">
                <input type="checkbox" checked={draft.testing} onChange={(e) => set({ testing: e.target.checked })} />
                Testing <span className="muted small">— Parquet is flushed at once, for trying things out.</span>
              </label>
            </div>
            <div className="grid-2">
              <Field label="Retention" hint="How long Parquet is kept: 12h, 30d, 2w, 1y; empty keeps it forever." error={errorFor("retention", "Retention")}>
                {(p) => (
                  <input {...p} className="mono" placeholder="keep forever" value={draft.retention} onChange={(e) => set({ retention: e.target.value })} />
                )}
              </Field>
              <Field label="Object-store connection" hint="Configured on the agents; “default” unless you set up others." error={errorFor("destination.connection", "Connection")}>
                {(p) => (
                  <input {...p} className="mono" placeholder="default" value={draft.destination} onChange={(e) => set({ destination: e.target.value.trim() })} />
                )}
              </Field>
            </div>
            <div className="field">
              <span className="ds-label">Labels</span>
              <KeyValueRows
                rows={draft.labels}
                onChange={(labels) => set({ labels })}
                noun="label"
                errors={Object.fromEntries(
                  draft.labels.map((l) => [l.key.trim(), errorFor(`labels.${l.key.trim()}`, "Label")]),
                )}
              />
              {errorFor("labels", "Labels") && (
                <small className="field-error" role="alert">
                  {errorFor("labels", "Labels")}
                </small>
              )}
            </div>
          </Panel>

          <Panel title="Transformations" sub="Applied by pipers, in order, to every batch before it is stored.">
            <TransformEditor
              steps={draft.transformations}
              onChange={(transformations) => set({ transformations })}
              stats={previewResult?.steps}
              ctx={{ errorAt: stepErrorAt, fieldList: "ds-field-names", routeList: "ds-route-targets" }}
              disabled={!writable}
            />
          </Panel>
        </fieldset>

        <Panel title="Preview" sub="Paste sample records to see what the steps above make of them.">
          {previewName ? (
            <Preview
              dataset={previewName}
              steps={draft.transformations}
              dataHint={draft.dataHint || info?.dataHint || ""}
              onResult={setPreviewResult}
              onProblem={setPreviewProblem}
            />
          ) : (
            <p className="muted">Choose the tenant above to run the preview (it runs with that tenant's permissions).</p>
          )}
        </Panel>

        {writable && (
          <div className="ds-savebar">
            {conflict ? (
              <ConflictNote onReload={onReload} />
            ) : (
              save.error && (
                <div>
                  <ErrorNote error={save.error} showFields={false} />
                  {unshown.length > 0 && (
                    <ul className="field-error small">
                      {unshown.map(([k, v]) => (
                        <li key={k}>
                          <code>{k}</code> {v}
                        </li>
                      ))}
                    </ul>
                  )}
                </div>
              )
            )}
            {touched && Object.keys(client).length > 0 && (
              <p className="field-error" role="alert">
                Fix the {Object.keys(client).length === 1 ? "field" : `${Object.keys(client).length} fields`} marked above first.
              </p>
            )}
            <div className="form-actions">
              <SubmitButton
                busy={save.busy}
                label={creating ? "Create dataset" : "Save changes"}
                busyLabel={creating ? "Creating…" : "Saving…"}
              />
              <a className="button secondary" href={href("datasets")}>
                Cancel
              </a>
              {!creating && <span className="muted small">{dirty ? "Unsaved changes" : "No unsaved changes"}</span>}
            </div>
          </div>
        )}
      </form>

      {base && (
        <Panel title="Known fields" sub="What pipers have seen in this dataset's output.">
          <ErrorNote error={fields.error} />
          {fields.loading && !fields.data ? <Loading what="Loading fields" /> : fields.data && <KnownFields fields={fields.data as DatasetFields} />}
        </Panel>
      )}
    </section>
  );
}

// ABORTED: the etag this form was loaded with is stale.
function ConflictNote({ onReload }: { onReload?: () => void }) {
  return (
    <div className="error-note" role="alert">
      <strong>This dataset was changed by someone else since you opened it — reload to get the latest version.</strong>{" "}
      Reloading discards the changes made here.{" "}
      <button type="button" className="secondary small" onClick={onReload}>
        Reload
      </button>
    </div>
  );
}

function Panel({ title, sub, children }: { title: string; sub?: string; children: ReactNode }) {
  const id = `ds-${title.toLowerCase().replace(/\W+/g, "-")}`;
  return (
    <section className="panel" aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {sub && <p className="muted small ds-panel-sub">{sub}</p>}
      {children}
    </section>
  );
}

function OptionHints({
  info,
  present,
  onAdd,
}: {
  info: NonNullable<ReturnType<typeof sourceInfo>>;
  present: Set<string>;
  onAdd: (key: string, value: string) => void;
}) {
  if (info.options.length === 0) return <small className="hint">{info.id} sources take no options.</small>;
  return (
    <details className="ds-hints" open={info.options.some((o) => o.required)}>
      <summary>Options of {info.id} sources</summary>
      <ul className="ds-option-hints">
        {info.options.map((o) => (
          <li key={o.name}>
            <div>
              <code>{o.name}</code> <span className="muted small">{o.choices ? o.choices.join(" | ") : o.kind}</span>{" "}
              {o.required ? (
                <Badge tone="warn">required</Badge>
              ) : (
                o.default !== undefined && (
                  <span className="small muted">
                    default <code>{o.default}</code>
                  </span>
                )
              )}
              <div className="small">{o.help}</div>
            </div>
            {!present.has(o.name) && (
              <button type="button" className="secondary small" aria-label={`Add option ${o.name}`} onClick={() => onAdd(o.name, o.default ?? "")}>
                Add
              </button>
            )}
          </li>
        ))}
      </ul>
    </details>
  );
}

function ProxyPicker({
  value,
  onChange,
  proxies,
  loadError,
  other,
  setOther,
  error,
}: {
  value: string;
  onChange: (v: string) => void;
  proxies: Agent[] | undefined;
  loadError: Problem | null;
  other: boolean;
  setOther: (b: boolean) => void;
  error?: string;
}) {
  const names = (proxies ?? []).map((a) => leaf(a.name));
  const freeText = other || !!loadError || (proxies !== undefined && proxies.length === 0);
  if (freeText) {
    return (
      <>
        <Field
          label="Proxy"
          hint={
            loadError
              ? "The list of proxies could not be loaded; type the agent name."
              : names.length === 0
                ? "No proxy has connected yet; type the agent name it will use (floe agent proxy --name …)."
                : "The agent name a proxy reports in its hello."
          }
          error={error}
        >
          {(p) => <input {...p} className="mono" value={value} placeholder="edge-01" onChange={(e) => onChange(e.target.value.trim())} />}
        </Field>
        {names.length > 0 && (
          <button type="button" className="secondary small" onClick={() => setOther(false)}>
            Choose from the connected proxies
          </button>
        )}
      </>
    );
  }
  return (
    <Field label="Proxy" hint="Proxies known to the control plane." error={error}>
      {(p) => (
        <select
          {...p}
          value={value}
          onChange={(e) => {
            if (e.target.value === "\u0000other") {
              setOther(true);
              return;
            }
            onChange(e.target.value);
          }}
        >
          <option value="">{proxies ? "Choose a proxy…" : "Loading proxies…"}</option>
          {(proxies ?? []).map((a) => (
            <option key={a.name} value={leaf(a.name)}>
              {leaf(a.name)}
              {a.connected ? "" : " (disconnected)"}
              {a.hostname ? ` — ${a.hostname}` : ""}
            </option>
          ))}
          {value && !names.includes(value) && <option value={value}>{value} (not connected)</option>}
          <option value={"\u0000other"}>Another name…</option>
        </select>
      )}
    </Field>
  );
}
