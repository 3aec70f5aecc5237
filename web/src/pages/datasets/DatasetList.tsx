// #/datasets: the datasets of the tenant picked in the top bar (or of every tenant).
import type { Dataset } from "@sdk/datasets_pb";
import { api } from "../../api";
import { Badge, EmptyState, ErrorNote, Loading, PageHeader } from "../../components/ui";
import { ago, leaf, tenantOf, when } from "../../format";
import { useLoad } from "../../hooks";
import { href } from "../../router";
import { canWrite, getSession } from "../../session";
import { useTenant } from "../../tenant";
import { sourceInfo, sourceLabel } from "./sources";

export async function listDatasets(parent: string, signal?: AbortSignal): Promise<Dataset[]> {
  const all: Dataset[] = [];
  let pageToken = "";
  do {
    const r = await api.datasets.listDatasets({ parent, pageSize: 500, pageToken }, { signal });
    all.push(...r.datasets);
    pageToken = r.nextPageToken;
  } while (pageToken);
  return all;
}

export function proxyText(ds: Dataset): string {
  const t = ds.proxy?.target;
  if (t?.case === "agent") return t.value;
  if (t?.case === "selector") {
    return Object.entries(t.value.matchLabels)
      .map(([k, v]) => `${k}=${v}`)
      .join(", ");
  }
  return "";
}

export function DatasetList({ tenant }: { tenant: string }) {
  const { tenants } = useTenant();
  const parent = tenant ? `tenants/${tenant}` : "tenants/-";
  const list = useLoad((signal) => listDatasets(parent, signal), [parent]);
  const writable = canWrite(getSession());
  const scope = tenant ? tenants.find((t) => leaf(t.name) === tenant)?.displayName || tenant : "";
  const newHref = href("datasets", "new") + (tenant ? `?tenant=${encodeURIComponent(tenant)}` : "");
  const cliTenant = tenant || "acme";
  return (
    <section aria-labelledby="page-title" className="ds-page">
      <PageHeader
        title="Datasets"
        sub={
          tenant
            ? `Streams of records of ${scope}: where they are collected, how they are transformed.`
            : "Streams of records of every tenant: where they are collected, how they are transformed."
        }
      >
        {writable && (
          <a className="button" href={newHref}>
            New dataset
          </a>
        )}
      </PageHeader>
      <ErrorNote error={list.error} />
      {list.loading && !list.data ? (
        <Loading what="Loading datasets" />
      ) : list.data && list.data.length === 0 ? (
        <EmptyState title={tenant ? `No datasets in ${scope} yet` : "No datasets yet"}>
          {tenants.length === 0 && !tenant ? (
            <p>
              Datasets belong to a tenant. <a href={href("tenants")}>Create a tenant</a> first, then add its datasets here.
            </p>
          ) : (
            <>
              <p>
                A dataset says how an edge proxy collects a stream (syslog, HTTP, NetFlow…, on which port), how pipers
                transform it, and where its Parquet goes. Create one here, or with the CLI:
              </p>
              <pre>
                <code>
                  floe datasets create {cliTenant}/syslog --source-type syslog_udp --port 5514 --proxy local
                </code>
              </pre>
              {writable && (
                <a className="button" href={newHref}>
                  Create a dataset
                </a>
              )}
            </>
          )}
        </EmptyState>
      ) : (
        list.data && (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Dataset</th>
                  <th scope="col">Tenant</th>
                  <th scope="col">Source</th>
                  <th scope="col">Proxy</th>
                  <th scope="col">State</th>
                  <th scope="col" className="num">
                    Steps
                  </th>
                  <th scope="col">Updated</th>
                </tr>
              </thead>
              <tbody>
                {list.data.map((ds) => {
                  const t = tenantOf(ds.name);
                  const id = leaf(ds.name);
                  const info = sourceInfo(ds.source?.type);
                  return (
                    <tr key={ds.name}>
                      <td>
                        <a href={href("datasets", t, id)}>
                          <strong>{ds.displayName || id}</strong>
                        </a>
                        <div className="muted small mono">{ds.name}</div>
                      </td>
                      <td>{t}</td>
                      <td>
                        {sourceLabel(ds.source?.type)}
                        <div className="muted small mono">
                          {info?.transport ? `${info.transport.toUpperCase()} ${ds.source?.port}` : ds.source?.options["subject"] ?? ""}
                        </div>
                      </td>
                      <td className="mono small">{proxyText(ds) || <span className="muted">not assigned</span>}</td>
                      <td>
                        <div className="ds-badges">
                          {ds.active ? <Badge tone="ok">Active</Badge> : <Badge tone="off">Inactive</Badge>}
                          {ds.testing && <Badge tone="info">Testing</Badge>}
                        </div>
                      </td>
                      <td className="num">{ds.transformations.length}</td>
                      <td className="small" title={when(ds.updateTime)}>
                        {ago(ds.updateTime)}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )
      )}
    </section>
  );
}
