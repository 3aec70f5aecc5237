// Dead letters: the agents that keep a dead-letter queue (proxies, receivers, connectors) with
// the size each last reported, and the batches of the chosen one, to inspect and retry.
import { AgentKind } from "@sdk/agent_pb";
import type { Agent } from "@sdk/fleet_pb";
import { api } from "../api";
import { DlqItems } from "../components/DlqItems";
import { EmptyState, ErrorNote, Loading, PageHeader, StatusBadge } from "../components/ui";
import { ago, enumLabel, leaf, num } from "../format";
import { useLoad, useTick } from "../hooks";
import { href, useRoute } from "../router";
import { useTenant } from "../tenant";
import "./Dlq.css";

const DLQ_KINDS = new Set([AgentKind.PROXY, AgentKind.RECEIVER, AgentKind.CONNECTOR]);
// How often the agent list (and the DLQ sizes from health reports) is refreshed.
const POLL_MS = 5_000;

async function listDlqAgents(): Promise<Agent[]> {
  const all: Agent[] = [];
  let pageToken = "";
  do {
    const r = await api.fleet.listAgents({ pageSize: 500, pageToken });
    all.push(...r.agents);
    pageToken = r.nextPageToken;
  } while (pageToken);
  return all.filter((a) => DLQ_KINDS.has(a.kind)).sort((a, b) => a.name.localeCompare(b.name));
}

// The DLQ size of the agent's last health report, summed over its components.
function dlqSize(a: Agent): bigint {
  return (a.lastHealth?.components ?? []).reduce((sum, c) => sum + c.dlqSize, 0n);
}

function dlqLink(a: Agent): string {
  return href("dlq") + "?agent=" + encodeURIComponent(leaf(a.name));
}

function AgentsTable({ agents, selected }: { agents: Agent[]; selected: string }) {
  return (
    <div className="table-wrap">
      <table className="dlq-agents">
        <caption className="sr-only">Agents with a dead-letter queue</caption>
        <thead>
          <tr>
            <th scope="col">Agent</th>
            <th scope="col">Kind</th>
            <th scope="col">Status</th>
            <th scope="col" className="num">
              Dead-lettered
            </th>
            <th scope="col">Last report</th>
          </tr>
        </thead>
        <tbody>
          {agents.map((a) => {
            const size = dlqSize(a);
            const current = leaf(a.name) === selected;
            return (
              <tr key={a.name} className={current ? "dlq-current" : undefined}>
                <td>
                  <a href={dlqLink(a)} aria-current={current ? "true" : undefined}>
                    <strong>{leaf(a.name)}</strong>
                  </a>
                  {a.hostname && <div className="muted small">{a.hostname}</div>}
                </td>
                <td>{enumLabel(AgentKind, a.kind)}</td>
                <td>
                  <StatusBadge status={a.status} />
                </td>
                <td className="num">
                  {a.lastHealth ? (
                    <span className={size > 0n ? "dlq-count" : undefined}>{num(size)}</span>
                  ) : (
                    <span className="muted">–</span>
                  )}
                </td>
                <td className="small">{ago(a.lastHealth?.reportTime)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

export function Dlq() {
  const tick = useTick(POLL_MS);
  const agents = useLoad(listDlqAgents, [tick]);
  const { query } = useRoute();
  const { tenant } = useTenant();
  const list = agents.data ?? [];
  // The agent in the address, else the first one holding dead letters, else the first one.
  const wanted = query.get("agent") ?? "";
  const chosen = wanted
    ? list.find((a) => leaf(a.name) === wanted)
    : (list.find((a) => dlqSize(a) > 0n) ?? list[0]);

  return (
    <section aria-labelledby="page-title">
      <PageHeader
        title="Dead letters"
        sub="Batches an agent gave up delivering: refused by the next hop or past its retry limits. Fix the cause, then retry them."
      />
      <ErrorNote error={agents.error} />
      {agents.loading && !agents.data ? (
        <Loading what="Loading agents" />
      ) : agents.data && list.length === 0 ? (
        <EmptyState title="No agent keeps a dead-letter queue">
          <p>
            Proxies, receivers and connectors keep the batches they cannot deliver. Start one with{" "}
            <code>floe up</code> or <code>floe agent proxy</code>; it appears here once it connects.
          </p>
        </EmptyState>
      ) : (
        <>
          <h2 className="dlq-section-title">Agents</h2>
          <AgentsTable agents={list} selected={chosen ? leaf(chosen.name) : ""} />
          {wanted && !chosen && agents.data && (
            <div className="error-note" role="alert">
              <strong>
                There is no proxy, receiver or connector named {wanted}. Choose one of the agents above.
              </strong>
            </div>
          )}
          {chosen &&
            (chosen.connected ? (
              <DlqItems key={chosen.name} agent={chosen} tenant={tenant} dlqSize={dlqSize(chosen)} />
            ) : (
              <section className="panel dlq-items" aria-labelledby="dlq-items-title">
                <h2 id="dlq-items-title">Dead letters on {leaf(chosen.name)}</h2>
                <p className="notice">
                  {leaf(chosen.name)} is not connected (last seen {ago(chosen.lastSeenTime)}): its dead letters can be
                  listed once it reconnects. It keeps them on its own disk meanwhile.
                </p>
              </section>
            ))}
        </>
      )}
    </section>
  );
}
