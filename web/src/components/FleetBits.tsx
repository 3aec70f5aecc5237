// Pieces the Overview and Agents pages share: the live-stream indicator, problem badges and
// rate formatting.
import { Badge, ErrorNote } from "./ui";
import { useTick } from "../hooks";
import type { Agent } from "@sdk/fleet_pb";
import { AgentKind } from "@sdk/agent_pb";
import type { FleetState } from "../fleet";
import { HealthStatus } from "@sdk/health_pb";
import { enumLabel } from "../format";

export function kindText(kind: AgentKind): string {
  return enumLabel(AgentKind, kind);
}

/** "1.2k/s", "0.3/s", "–" (no rate yet). */
export function perSecond(v: number | undefined): string {
  if (v === undefined) return "–";
  if (v === 0) return "0/s";
  if (v < 10) return `${v.toFixed(1)}/s`;
  return `${new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(v)}/s`;
}

/** Whether the watch is live, and when not, why and when it tries again (one note, not a flood). */
export function LiveState({ fleet }: { fleet: FleetState }) {
  useTick(1000);
  const since = new Date(fleet.since || Date.now()).toLocaleTimeString();
  if (fleet.phase === "live")
    return (
      <span className="fleet-live" role="status" title={`Rates are computed in this browser since ${since}`}>
        <span className="fleet-dot ok" aria-hidden="true" /> Live
      </span>
    );
  if (fleet.phase === "reconnecting") {
    const wait = fleet.retryAt ? Math.max(0, Math.ceil((fleet.retryAt - Date.now()) / 1000)) : 0;
    return (
      <span className="fleet-live" role="status">
        <span className="fleet-dot warn" aria-hidden="true" /> {wait > 0 ? `Reconnecting in ${wait}s…` : "Reconnecting…"}
      </span>
    );
  }
  return (
    <span className="fleet-live" role="status">
      <span className="fleet-dot off" aria-hidden="true" /> Connecting…
    </span>
  );
}

/** The stream's last failure while it reconnects (the list shown is the last known state). */
export function StreamProblem({ fleet }: { fleet: FleetState }) {
  if (fleet.phase !== "reconnecting" || !fleet.problem) return null;
  return (
    <div>
      <ErrorNote error={{ ...fleet.problem, message: `Live updates stopped: ${fleet.problem.message}` }} />
      <p className="muted small">What is shown is the last known state; it updates again once the stream is back.</p>
    </div>
  );
}

export function AgentFlags({ agent }: { agent: Agent }) {
  return (
    <>
      {agent.drift && (
        <Badge tone="warn">
          <span title="Some config type's running version differs from the desired one">Drift</span>
        </Badge>
      )}
      {agent.configFailed && <Badge tone="bad">Config failed</Badge>}
    </>
  );
}

/** Every error the agent reports now: its status message, rejected configs, failing components. */
export function agentErrors(a: Agent): { where: string; what: string }[] {
  const out: { where: string; what: string }[] = [];
  if (a.status !== HealthStatus.HEALTHY && a.statusMessage) out.push({ where: "agent", what: a.statusMessage });
  for (const c of a.configs) for (const e of c.errors) out.push({ where: `config ${c.configType}`, what: e });
  for (const c of a.lastHealth?.components ?? []) {
    if (c.status === HealthStatus.UNHEALTHY || c.status === HealthStatus.DEGRADED)
      out.push({ where: `component ${c.name}`, what: c.message || "reported " + enumLabel(HealthStatus, c.status).toLowerCase() });
  }
  return out;
}

