// #/overview, the landing page: pipeline health at a glance, live from the fleet stream.
import "./Agents.css";
import { useEffect } from "react";
import type { Agent } from "@sdk/fleet_pb";
import { HealthStatus } from "@sdk/health_pb";
import { api } from "../api";
import { Sparkline } from "../components/Chart";
import { AgentFlags, agentErrors, kindText, LiveState, perSecond, StreamProblem } from "../components/FleetBits";
import { EmptyState, ErrorNote, Loading, PageHeader, StatusBadge } from "../components/ui";
import { currentRate, kindSeries, STAGES, stageCounts, stageLabel, useFleet, type Rates } from "../fleet";
import { duration, leaf, num, seconds } from "../format";
import { useLoad, useTick } from "../hooks";
import { href } from "../router";
import { StartAgentHelp } from "./agents/help";

const STATUSES: { status: HealthStatus; label: string; tone: string }[] = [
  { status: HealthStatus.HEALTHY, label: "Healthy", tone: "ok" },
  { status: HealthStatus.DEGRADED, label: "Degraded", tone: "warn" },
  { status: HealthStatus.UNHEALTHY, label: "Unhealthy", tone: "bad" },
  { status: HealthStatus.OFFLINE, label: "Offline", tone: "off" },
];

function gauge(agents: Agent[], pick: "backlog" | "dlqSize"): bigint {
  let n = 0n;
  for (const a of agents) for (const c of a.lastHealth?.components ?? []) n += c[pick];
  return n;
}

function RateCell({ agents, metric, label, now }: { agents: Agent[]; metric: keyof Rates; label: string; now: number }) {
  const v = currentRate(agents, metric, now);
  return (
    <td className="num">
      <div className="fleet-rate">
        <Sparkline points={kindSeries(agents, metric, now)} label={label} width={140} height={32} />
        {v === undefined && agents.some((a) => a.status !== HealthStatus.OFFLINE) ? (
          <strong className="muted" title="A rate needs two health reports from an agent">
            collecting…
          </strong>
        ) : (
          <strong>{perSecond(v)}</strong>
        )}
      </div>
    </td>
  );
}

function Stages({ agents, now }: { agents: Agent[]; now: number }) {
  return (
    <section aria-labelledby="ov-stages">
      <h2 id="ov-stages">Pipeline</h2>
      <div className="table-wrap">
        <table className="fleet-stage">
          <thead>
            <tr>
              <th scope="col">Stage</th>
              <th scope="col">Agents</th>
              <th scope="col" className="num">In</th>
              <th scope="col" className="num">Out</th>
              <th scope="col" className="num">Backlog</th>
              <th scope="col" className="num">DLQ</th>
            </tr>
          </thead>
          <tbody>
            {STAGES.map((kind) => {
              const of = agents.filter((a) => a.kind === kind);
              const label = stageLabel(kind);
              const down = of.filter((a) => a.status !== HealthStatus.HEALTHY).length;
              const dlq = gauge(of, "dlqSize");
              return (
                <tr key={kind} aria-label={label}>
                  <th scope="row">
                    <a href={href("agents") + "?kind=" + label.toLowerCase()}>{label}</a>
                    <div className="muted small">counts {stageCounts(kind)}</div>
                  </th>
                  <td>
                    {of.length === 0 ? (
                      <span className="muted">none</span>
                    ) : (
                      <>
                        {of.length} {of.length === 1 ? "agent" : "agents"}
                        {down > 0 && <div className="small fleet-bad">{down} not healthy</div>}
                      </>
                    )}
                  </td>
                  <RateCell agents={of} metric="eventsIn" label={`${label} in per second`} now={now} />
                  <RateCell agents={of} metric="eventsOut" label={`${label} out per second`} now={now} />
                  <td className="num">{of.length ? num(gauge(of, "backlog")) : "–"}</td>
                  <td className="num">{!of.length ? "–" : dlq > 0n ? <a href={href("dlq")}>{num(dlq)}</a> : num(dlq)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function ControlPlane() {
  const health = useLoad(() => api.health.getHealth({}), []);
  const { reload } = health;
  useEffect(() => {
    const t = window.setInterval(reload, 15_000);
    return () => window.clearInterval(t);
  }, [reload]);
  const h = health.data;
  return (
    <section className="panel" aria-labelledby="ov-cp">
      <h2 id="ov-cp">Control plane</h2>
      <ErrorNote error={health.error} />
      {!h ? (
        health.error ? null : <Loading what="Checking the control plane" />
      ) : (
        <>
          <dl className="fleet-dl">
            <dt>Status</dt>
            <dd>
              <StatusBadge status={h.status} />
            </dd>
            <dt>Version</dt>
            <dd className="mono">{h.version || "–"}</dd>
            <dt>Uptime</dt>
            <dd>{duration(seconds(h.uptime))}</dd>
          </dl>
          <h3>Checks</h3>
          {h.checks.length === 0 ? (
            <p className="muted">No dependency checks reported.</p>
          ) : (
            <ul className="fleet-checks">
              {h.checks.map((c) => (
                <li key={c.name}>
                  <strong>{c.name}</strong> <StatusBadge status={c.status} />{" "}
                  <span className="muted small">{duration(seconds(c.latency))}</span>
                  {c.message && <div className="small">{c.message}</div>}
                </li>
              ))}
            </ul>
          )}
        </>
      )}
    </section>
  );
}

function Problems({ agents }: { agents: Agent[] }) {
  const problems = agents
    .map((a) => {
      const items = agentErrors(a).map((e) => `${e.where}: ${e.what}`);
      if (a.drift) {
        const types = a.configs.filter((c) => c.desiredVersion && c.effectiveVersion !== c.desiredVersion).map((c) => c.configType);
        items.unshift(`runs an older config than desired (${types.join(", ")})`);
      }
      return { a, items };
    })
    .filter((p) => p.items.length > 0 || p.a.status !== HealthStatus.HEALTHY);
  return (
    <section className="panel" aria-labelledby="ov-problems">
      <h2 id="ov-problems">Problems</h2>
      {problems.length === 0 ? (
        <p className="muted">None: every agent is healthy and runs its desired config.</p>
      ) : (
        <ul className="fleet-errors">
          {problems.map(({ a, items }) => (
            <li key={a.name}>
              <a href={href("agents", leaf(a.name))}>
                <strong>{leaf(a.name)}</strong>
              </a>{" "}
              <span className="muted small">{kindText(a.kind)}</span> <StatusBadge status={a.status} /> <AgentFlags agent={a} />
              {items.length > 0 && (
                <ul className="small">
                  {items.slice(0, 4).map((t, i) => (
                    <li key={i}>{t}</li>
                  ))}
                  {items.length > 4 && <li className="muted">and {items.length - 4} more</li>}
                </ul>
              )}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export function Overview() {
  const fleet = useFleet();
  useTick(5000); // rates go stale and charts move even when no report arrives
  const now = Date.now();
  const { agents } = fleet;
  const dlq = gauge(agents, "dlqSize");
  return (
    <section className="fleet-page" aria-labelledby="page-title">
      <PageHeader
        title="Overview"
        sub={`Pipeline health at a glance. Rates and charts are computed in this browser from the agents' health reports since this page opened (${new Date(
          fleet.since || now,
        ).toLocaleTimeString()}).`}
      >
        <LiveState fleet={fleet} />
      </PageHeader>
      <StreamProblem fleet={fleet} />
      {!fleet.loaded && agents.length === 0 ? (
        fleet.problem ? null : <Loading what="Loading the fleet" />
      ) : agents.length === 0 ? (
        <EmptyState title="No agents have connected yet">
          <StartAgentHelp />
        </EmptyState>
      ) : (
        <>
          <section aria-labelledby="ov-agents">
            <h2 id="ov-agents">Agents by status</h2>
            <div className="stats fleet-counts">
              {STATUSES.map(({ status, label, tone }) => {
                const n = agents.filter((a) => a.status === status).length;
                return (
                  <div key={status} className={`stat ${n > 0 ? tone : ""}`}>
                    <div className="stat-label">{label}</div>
                    <div className="stat-value" aria-label={`${label}: ${n}`}>
                      {n}
                    </div>
                  </div>
                );
              })}
              <div className="stat">
                <div className="stat-label">Backlog</div>
                <div className="stat-value">{num(gauge(agents, "backlog"))}</div>
              </div>
              <div className="stat">
                <div className="stat-label">DLQ size</div>
                <div className="stat-value">
                  <a href={href("dlq")} aria-label={`DLQ size: ${num(dlq)}, see dead letters`}>
                    {num(dlq)}
                  </a>
                </div>
              </div>
            </div>
          </section>
          <Stages agents={agents} now={now} />
        </>
      )}
      <div className="grid-2 fleet-grid">
        <ControlPlane />
        <Problems agents={agents} />
      </div>
    </section>
  );
}
