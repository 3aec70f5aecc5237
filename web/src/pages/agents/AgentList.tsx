// #/agents: every agent, live from the fleet stream, filtered by kind and text.
import { useMemo, useState } from "react";
import { AgentKind } from "@sdk/agent_pb";
import type { Agent } from "@sdk/fleet_pb";
import { AgentFlags, kindText, LiveState, perSecond, StreamProblem } from "../../components/FleetBits";
import { EmptyState, Loading, PageHeader, StatusBadge } from "../../components/ui";
import { latestRate, STAGES, useFleet } from "../../fleet";
import { ago, leaf } from "../../format";
import { useTick } from "../../hooks";
import { href, useRoute } from "../../router";
import { StartAgentHelp } from "./help";

function matches(a: Agent, text: string): boolean {
  if (!text) return true;
  const hay = [a.name, a.hostname, a.version, a.apiAddress, kindText(a.kind), ...Object.entries(a.labels).map(([k, v]) => `${k}=${v}`)]
    .join(" ")
    .toLowerCase();
  return text
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean)
    .every((w) => hay.includes(w));
}

function AgentRow({ a, now }: { a: Agent; now: number }) {
  const rate = latestRate(a.name, now);
  const id = leaf(a.name);
  return (
    <tr>
      <td>
        <a href={href("agents", id)}>
          <strong>{id}</strong>
        </a>
        {a.hostname && <div className="muted small">{a.hostname}</div>}
      </td>
      <td>{kindText(a.kind)}</td>
      <td>
        <div className="fleet-badges">
          <StatusBadge status={a.status} />
          <AgentFlags agent={a} />
        </div>
        {a.statusMessage && (
          <div className="muted small fleet-clip" title={a.statusMessage}>
            {a.statusMessage}
          </div>
        )}
      </td>
      <td className="small">
        {a.connected ? <>Connected {ago(a.connectTime, now)}</> : <>Disconnected</>}
        <div className="muted">last seen {ago(a.lastSeenTime, now)}</div>
      </td>
      <td className="mono small">{a.version || "–"}</td>
      <td className="num">
        {perSecond(rate?.eventsIn)}
        <span className="muted"> in</span>
        <div>
          {perSecond(rate?.eventsOut)}
          <span className="muted"> out</span>
        </div>
      </td>
    </tr>
  );
}

export function AgentList() {
  const fleet = useFleet();
  useTick(1000); // relative times and rates tick
  const now = Date.now();
  const { query } = useRoute();
  // #/agents?kind=proxy (the Overview's stage links)
  const [kind, setKind] = useState<AgentKind>(() => {
    const k: unknown = AgentKind[(query.get("kind") ?? "").toUpperCase() as keyof typeof AgentKind];
    return typeof k === "number" ? (k as AgentKind) : AgentKind.UNSPECIFIED;
  });
  const [text, setText] = useState("");
  const shown = useMemo(
    () => fleet.agents.filter((a) => (!kind || a.kind === kind) && matches(a, text.trim())),
    [fleet.agents, kind, text],
  );
  return (
    <section className="fleet-page" aria-labelledby="page-title">
      <PageHeader
        title="Agents"
        sub={
          <>
            Live: rows change as agents connect, report and go away. Rates are computed in this browser since this page opened (
            {new Date(fleet.since || now).toLocaleTimeString()}).
          </>
        }
      >
        <LiveState fleet={fleet} />
      </PageHeader>
      <StreamProblem fleet={fleet} />
      {!fleet.loaded && fleet.agents.length === 0 ? (
        fleet.problem ? null : <Loading what="Loading agents" />
      ) : fleet.agents.length === 0 ? (
        <EmptyState title="No agents have connected yet">
          <StartAgentHelp />
        </EmptyState>
      ) : (
        <>
          <form className="fleet-filters" role="search" aria-label="Search agents" onSubmit={(e) => e.preventDefault()}>
            <label>
              <span>Kind</span>
              <select value={kind} onChange={(e) => setKind(Number(e.target.value) as AgentKind)}>
                <option value={AgentKind.UNSPECIFIED}>All kinds</option>
                {STAGES.map((k) => (
                  <option key={k} value={k}>
                    {kindText(k)}
                  </option>
                ))}
              </select>
            </label>
            <label>
              <span>Filter</span>
              <input type="search" value={text} placeholder="name, host, version, label" onChange={(e) => setText(e.target.value)} />
            </label>
            <span className="muted small" aria-live="polite">
              {shown.length} of {fleet.agents.length} agents
            </span>
          </form>
          {shown.length === 0 ? (
            <EmptyState title="No agent matches the filter">
              <button
                type="button"
                className="secondary"
                onClick={() => {
                  setKind(AgentKind.UNSPECIFIED);
                  setText("");
                }}
              >
                Clear the filter
              </button>
            </EmptyState>
          ) : (
            <div className="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Agent</th>
                    <th scope="col">Kind</th>
                    <th scope="col">Status</th>
                    <th scope="col">Connection</th>
                    <th scope="col">Version</th>
                    <th scope="col" className="num">
                      Events/s
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {shown.map((a) => (
                    <AgentRow key={a.name} a={a} now={now} />
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
    </section>
  );
}
