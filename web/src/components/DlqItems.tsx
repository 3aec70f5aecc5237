// One agent's dead-lettered batches: listed with the `list_dlq` command and moved back to its
// queue with `retry_dlq`, both sent through FleetService.SendCommand (the browser cannot reach
// the agent's own port).
import { useEffect, useState } from "react";
import type { Agent } from "@sdk/fleet_pb";
import type { CommandResult, DlqItem } from "@sdk/agent_pb";
import { api } from "../api";
import { canWrite, getSession } from "../session";
import { ago, bytes, leaf, num, when } from "../format";
import { useAction, useLoad } from "../hooks";
import { ConfirmButton, EmptyState, ErrorNote, Loading } from "./ui";

// Batches listed at once: the oldest first, as the agent keeps them.
const LIST_LIMIT = 500;

interface Listing {
  items: DlqItem[];
  count: number;
  sizeBytes: bigint;
}

async function listDlq(agent: string, tenant: string): Promise<Listing> {
  const r = await api.fleet.sendCommand({
    agent,
    command: { action: { case: "listDlq", value: { tenant, limit: LIST_LIMIT } } },
  });
  const result = r.result;
  if (!result?.ok) throw new Error(result?.message || `${leaf(agent)} did not list its dead letters.`);
  return {
    items: result.dlqItems,
    count: Number(result.dlqTotals?.count ?? BigInt(result.dlqItems.length)),
    sizeBytes: result.dlqTotals?.sizeBytes ?? 0n,
  };
}

async function retryDlq(agent: string, ids: string[]): Promise<CommandResult> {
  const r = await api.fleet.sendCommand({
    agent,
    command: { action: { case: "retryDlq", value: { items: ids } } },
  });
  if (!r.result?.ok) throw new Error(r.result?.message || `${leaf(agent)} did not retry its dead letters.`);
  return r.result;
}

function ItemRow({ item, checked, onToggle }: { item: DlqItem; checked: boolean; onToggle: () => void }) {
  const records = Number(item.records);
  return (
    <tr className={checked ? "dlq-checked" : undefined}>
      <td className="dlq-select">
        <input type="checkbox" checked={checked} onChange={onToggle} aria-label={`Select batch ${item.id}`} />
      </td>
      <td className="mono small">{item.id}</td>
      <td className="dlq-name">{leaf(item.tenant)}</td>
      <td className="dlq-name">{leaf(item.dataset)}</td>
      <td className="num">
        {bytes(item.sizeBytes)}
        {records > 0 && <div className="muted small">{num(records)} records</div>}
      </td>
      <td className="num">{item.attempts}</td>
      <td className="dlq-reason">
        {item.reason || <span className="muted">No reason recorded</span>}
        {item.lastError && item.lastError !== item.reason && (
          <div className="muted small">Last error: {item.lastError}</div>
        )}
      </td>
      <td className="small">
        <time title={when(item.deadLetterTime)}>{ago(item.deadLetterTime)}</time>
      </td>
    </tr>
  );
}

// `dlqSize` (from the agent's last health report) changes when batches come and go: the list
// reloads then, besides on Refresh and after a retry.
export function DlqItems({ agent, tenant, dlqSize }: { agent: Agent; tenant: string; dlqSize: bigint }) {
  const name = leaf(agent.name);
  const listing = useLoad(() => listDlq(agent.name, tenant), [agent.name, tenant, dlqSize]);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [done, setDone] = useState("");
  const retry = useAction(async (ids: string[]) => {
    setDone("");
    const r = await retryDlq(agent.name, ids);
    setDone(r.message);
    setSelected(new Set());
    listing.reload();
  });
  const items = listing.data?.items;

  // Forget selected ids that are no longer listed (delivered, or evicted by the size limit).
  useEffect(() => {
    if (!items) return;
    const present = new Set(items.map((i) => i.id));
    setSelected((s) => {
      const kept = [...s].filter((id) => present.has(id));
      return kept.length === s.size ? s : new Set(kept);
    });
  }, [items]);

  useEffect(() => {
    setDone("");
    retry.clear();
    setSelected(new Set());
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [agent.name, tenant]);

  const toggle = (id: string) =>
    setSelected((s) => {
      const next = new Set(s);
      if (!next.delete(id)) next.add(id);
      return next;
    });
  const allChecked = !!items && items.length > 0 && items.every((i) => selected.has(i.id));
  const writer = canWrite(getSession());
  const scope = tenant ? ` of tenant ${tenant}` : "";
  // With a tenant picked, "all" means the listed batches of that tenant: the command itself
  // knows no tenant filter and would retry every tenant's batches.
  const allIds = tenant ? (items ?? []).map((i) => i.id) : [];
  const truncated = !!listing.data && listing.data.count > listing.data.items.length;

  return (
    <section className="panel dlq-items" aria-labelledby="dlq-items-title">
      <div className="dlq-items-head">
        <div>
          <h2 id="dlq-items-title">Dead letters on {name}</h2>
          {listing.data && listing.data.count > 0 && (
            <p className="muted small" aria-live="polite">
              {num(listing.data.count)} batch{listing.data.count === 1 ? "" : "es"}
              {scope}, {bytes(listing.data.sizeBytes)}
              {truncated && ` — the oldest ${num(listing.data.items.length)} are listed`}
            </p>
          )}
        </div>
        <div className="row-actions">
          <button type="button" className="secondary" disabled={listing.loading} onClick={() => listing.reload()}>
            {listing.loading && listing.data ? "Refreshing…" : "Refresh"}
          </button>
          {writer && items && items.length > 0 && (
            <>
              <ConfirmButton
                className=""
                question={`Retry ${selected.size} selected batch${selected.size === 1 ? "" : "es"}?`}
                busy={retry.busy || selected.size === 0}
                onConfirm={() => retry.run([...selected])}
              >
                Retry selected ({selected.size})
              </ConfirmButton>
              <ConfirmButton
                className="secondary"
                question={
                  tenant
                    ? `Retry the ${items.length} listed batch${items.length === 1 ? "" : "es"} of ${tenant}?`
                    : `Retry every dead-lettered batch on ${name}?`
                }
                busy={retry.busy}
                onConfirm={() => retry.run(allIds)}
              >
                Retry all
              </ConfirmButton>
            </>
          )}
        </div>
      </div>
      <div className="dlq-outcome">
        {retry.busy && <Loading what="Retrying" />}
        {done && (
          <p className="notice" role="status">
            {done}
          </p>
        )}
        <ErrorNote error={retry.error} />
      </div>
      <ErrorNote error={listing.error} />
      {listing.loading && !listing.data ? (
        <Loading what={`Asking ${name} for its dead letters`} />
      ) : items && items.length === 0 ? (
        <EmptyState title="Nothing dead-lettered">
          <p>
            {tenant ? `${name} holds no batches of tenant ${tenant}. ` : `${name} holds no batches. `}
            Batches land here after a receiver refuses them (4xx) or they exceed max retries/age.
          </p>
          <p className="small">
            From a shell: <code>floe agents dlq {name}</code>
          </p>
        </EmptyState>
      ) : items ? (
        <div className="table-wrap">
          <table>
            <caption className="sr-only">Dead-lettered batches on {name}, oldest first</caption>
            <thead>
              <tr>
                <th scope="col" className="dlq-select">
                  <input
                    type="checkbox"
                    checked={allChecked}
                    onChange={() => setSelected(allChecked ? new Set() : new Set(items.map((i) => i.id)))}
                    aria-label="Select every listed batch"
                  />
                </th>
                <th scope="col">Batch</th>
                <th scope="col">Tenant</th>
                <th scope="col">Dataset</th>
                <th scope="col" className="num">
                  Size
                </th>
                <th scope="col" className="num">
                  Attempts
                </th>
                <th scope="col">Reason</th>
                <th scope="col">Dead-lettered</th>
              </tr>
            </thead>
            <tbody>
              {items.map((i) => (
                <ItemRow key={i.id} item={i} checked={selected.has(i.id)} onToggle={() => toggle(i.id)} />
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {!writer && items && items.length > 0 && (
        <p className="muted small">Retrying needs an editor or admin role.</p>
      )}
    </section>
  );
}
