// The live fleet: one FleetService.WatchAgents stream per page session, shared by every page that
// calls useFleet(), plus a rolling history of the agents' health counters from which pages
// compute rates.
//
// API (keep it small):
//   useFleet(): FleetState                  the agents and the stream's state; re-renders on change
//   agentRates(name): RatePoint[]           one agent's rate points (oldest first), since the page opened
//   latestRate(name, now?): RatePoint?      its newest point while still current
//   currentRate(agents, metric, now?)       summed current rate of some agents (undefined: no data yet)
//   kindSeries(agents, metric, now?)        summed rate series of some agents (a stage's sparkline)
//   STAGES, stageLabel(kind), stageCounts(kind)   pipeline stages in data-path order, and their units
//
// The history is collected in this browser while the dashboard is open; the control plane keeps
// only each agent's last report. Counters are cumulative per agent process: a drop (a restart)
// counts as a reset, never as a negative rate.
import { useSyncExternalStore } from "react";
import { Code } from "@connectrpc/connect";
import { AgentKind, type ComponentHealth } from "@sdk/agent_pb";
import { HealthStatus } from "@sdk/health_pb";
import { WatchAgentsResponse_EventType, type Agent } from "@sdk/fleet_pb";
import { api } from "./api";
import type { Point } from "./components/Chart";
import { problem, type Problem } from "./errors";
import { date } from "./format";
import { getSession, onSession } from "./session";

/** How much history is kept per agent. */
export const HISTORY_MS = 15 * 60_000;
/** Samples kept per agent at most (a health report every second for 15 minutes would be 900). */
const MAX_SAMPLES = 400;
/** The stream stays open this long after the last page using it goes away (quick navigation). */
const LINGER_MS = 60_000;
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** A stream that lived this long resets the backoff. */
const STABLE_MS = 30_000;
/** A rate point counts as current for max(this, 3 report intervals). */
const FRESH_MS = 30_000;

export type Phase = "connecting" | "live" | "reconnecting" | "stopped";

export interface FleetState {
  /** Every agent the caller may see, sorted by name. */
  agents: Agent[];
  byName: ReadonlyMap<string, Agent>;
  /** True once the first full list arrived (an empty fleet is then really empty). */
  loaded: boolean;
  phase: Phase;
  /** Why the stream last failed (cleared when it is live again). */
  problem: Problem | null;
  /** When the next reconnect attempt starts (ms since the epoch), while reconnecting. */
  retryAt: number | null;
  /** When this page session started collecting history (ms since the epoch). */
  since: number;
  /** Grows with every change; handy as a memo dependency. */
  revision: number;
}

export interface Rates {
  eventsIn: number; // per second
  eventsOut: number;
  bytesIn: number;
  bytesOut: number;
}

export interface RatePoint extends Rates {
  /** When the report ending this interval arrived in the browser (ms since the epoch). */
  t: number;
  /** Length of the interval in seconds, from the agents' report times. */
  dt: number;
  /** Per component, by component name. */
  components: Record<string, Rates>;
  /** Gauges at the end of the interval, summed over components. */
  backlog: number;
  dlqSize: number;
}

/** The pipeline stages in data-path order. */
export const STAGES: AgentKind[] = [
  AgentKind.PROXY,
  AgentKind.RECEIVER,
  AgentKind.PIPER,
  AgentKind.PACKER,
  AgentKind.QUERY,
  AgentKind.CONNECTOR,
];

const STAGE_TEXT: Record<number, { label: string; counts: string }> = {
  [AgentKind.PROXY]: { label: "Proxy", counts: "events" },
  [AgentKind.RECEIVER]: { label: "Receiver", counts: "batches" },
  [AgentKind.PIPER]: { label: "Piper", counts: "events" },
  [AgentKind.PACKER]: { label: "Packer", counts: "rows" },
  [AgentKind.QUERY]: { label: "Query", counts: "queries in, rows out" },
  [AgentKind.CONNECTOR]: { label: "Connector", counts: "events" },
};

export function stageLabel(kind: AgentKind): string {
  return STAGE_TEXT[kind]?.label ?? "Unknown";
}

/** What a stage's events_in/out count (each agent kind counts its own unit of work). */
export function stageCounts(kind: AgentKind): string {
  return STAGE_TEXT[kind]?.counts ?? "events";
}

// -- history ---------------------------------------------------------------------------------

interface Counters {
  eventsIn: number;
  eventsOut: number;
  bytesIn: number;
  bytesOut: number;
}

interface Sample {
  reportMs: number;
  instance: string;
  counters: Map<string, Counters>;
}

interface History {
  last: Sample | null;
  points: RatePoint[];
}

function countersOf(c: ComponentHealth): Counters {
  return {
    eventsIn: Number(c.eventsIn),
    eventsOut: Number(c.eventsOut),
    bytesIn: Number(c.bytesIn),
    bytesOut: Number(c.bytesOut),
  };
}

// A counter that went down was reset (the agent restarted): what it counted since is its value.
function delta(now: number, before: number | undefined, restarted: boolean): number {
  if (before === undefined || restarted || now < before) return now;
  return now - before;
}

const ZERO: Rates = { eventsIn: 0, eventsOut: 0, bytesIn: 0, bytesOut: 0 };
const METRICS = ["eventsIn", "eventsOut", "bytesIn", "bytesOut"] as const;

// An agent's components form a chain (source -> batcher -> spool -> forwarder) with parallel
// copies per dataset ("source/tenants/acme/datasets/fw", "pipe/acme/fw"). Summing every component
// would count each event once per hop, so an agent's rate is that of its busiest group of
// parallel components (grouped by the name before the first '/').
function agentTotals(components: Record<string, Rates>): Rates {
  const groups = new Map<string, Rates>();
  for (const [name, r] of Object.entries(components)) {
    const key = name.split("/", 1)[0];
    const g = groups.get(key) ?? { ...ZERO };
    for (const m of METRICS) g[m] += r[m];
    groups.set(key, g);
  }
  const out = { ...ZERO };
  for (const g of groups.values()) for (const m of METRICS) out[m] = Math.max(out[m], g[m]);
  return out;
}

function record(hist: Map<string, History>, agent: Agent, receivedMs: number): boolean {
  const report = agent.lastHealth;
  const reportMs = date(report?.reportTime)?.getTime();
  if (!report || reportMs === undefined) return false;
  let h = hist.get(agent.name);
  if (!h) {
    h = { last: null, points: [] };
    hist.set(agent.name, h);
  }
  const prev = h.last;
  if (prev && prev.reportMs === reportMs && prev.instance === agent.instanceId) return false;
  const counters = new Map(report.components.map((c) => [c.name, countersOf(c)]));
  const sample: Sample = { reportMs, instance: agent.instanceId, counters };
  h.last = sample;
  if (prev) {
    const restarted = prev.instance !== sample.instance || reportMs < prev.reportMs;
    const dt = (reportMs - prev.reportMs) / 1000;
    if (dt > 0) {
      const components: Record<string, Rates> = {};
      for (const [name, c] of counters) {
        const before = prev.counters.get(name);
        const r = { ...ZERO };
        for (const m of METRICS) r[m] = delta(c[m], before?.[m], restarted) / dt;
        components[name] = r;
      }
      let backlog = 0;
      let dlqSize = 0;
      for (const c of report.components) {
        backlog += Number(c.backlog);
        dlqSize += Number(c.dlqSize);
      }
      h.points.push({ t: receivedMs, dt, components, backlog, dlqSize, ...agentTotals(components) });
    }
  }
  const cutoff = receivedMs - HISTORY_MS;
  let drop = 0;
  while (drop < h.points.length && h.points[drop].t < cutoff) drop++;
  drop = Math.max(drop, h.points.length - MAX_SAMPLES);
  if (drop > 0) h.points.splice(0, drop);
  return true;
}

// -- the store -------------------------------------------------------------------------------

async function listAll(signal: AbortSignal): Promise<Agent[]> {
  const all: Agent[] = [];
  let pageToken = "";
  do {
    const r = await api.fleet.listAgents({ pageSize: 500, pageToken }, { signal });
    all.push(...r.agents);
    pageToken = r.nextPageToken;
  } while (pageToken);
  return all;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = window.setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      window.clearTimeout(t);
      resolve();
    });
  });
}

class FleetStore {
  private agents = new Map<string, Agent>();
  private hist = new Map<string, History>();
  private listeners = new Set<() => void>();
  private ctl: AbortController | null = null;
  private linger: number | undefined;
  private flushTimer: number | undefined;
  private phase: Phase = "stopped";
  private problem: Problem | null = null;
  private retryAt: number | null = null;
  private loaded = false;
  private since = 0;
  private revision = 0;
  private attemptId = 0;
  snapshot: FleetState = this.build();

  constructor() {
    onSession((s) => {
      // Another user may see other agents: nothing of the previous session is kept.
      if (!s) this.reset();
    });
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    window.clearTimeout(this.linger);
    if (!this.ctl && getSession()) this.start();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.linger = window.setTimeout(() => this.stop(), LINGER_MS);
    };
  };

  getSnapshot = (): FleetState => this.snapshot;

  history(name: string): RatePoint[] {
    return this.hist.get(name)?.points ?? [];
  }

  private build(): FleetState {
    const agents = [...this.agents.values()].sort((a, b) => a.name.localeCompare(b.name));
    return {
      agents,
      byName: new Map(this.agents),
      loaded: this.loaded,
      phase: this.phase,
      problem: this.problem,
      retryAt: this.retryAt,
      since: this.since,
      revision: this.revision,
    };
  }

  // Bursts (every agent at the start of a watch) become one render.
  private changed(): void {
    this.revision++;
    if (this.flushTimer !== undefined) return;
    this.flushTimer = window.setTimeout(() => {
      this.flushTimer = undefined;
      this.snapshot = this.build();
      for (const l of [...this.listeners]) l();
    }, 40);
  }

  private start(): void {
    const ctl = new AbortController();
    this.ctl = ctl;
    if (!this.since) this.since = Date.now();
    void this.run(ctl.signal);
  }

  private stop(): void {
    this.ctl?.abort();
    this.ctl = null;
    this.phase = "stopped";
    this.retryAt = null;
    this.changed();
  }

  private reset(): void {
    this.stop();
    this.agents.clear();
    this.hist.clear();
    this.loaded = false;
    this.problem = null;
    this.since = 0;
    this.changed();
  }

  private put(agent: Agent): void {
    this.agents.set(agent.name, agent);
    record(this.hist, agent, Date.now());
  }

  private async run(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      const started = Date.now();
      const seen = new Set<string>();
      const id = ++this.attemptId;
      let failed = false;
      this.phase = attempt === 0 && !this.loaded ? "connecting" : "reconnecting";
      this.retryAt = null;
      this.changed();
      const live = () => {
        if (this.phase === "live" || failed || signal.aborted) return;
        this.phase = "live";
        this.problem = null;
        this.changed();
      };
      // The watch sends every agent (EXISTING) and then changes, but no "that was all" marker:
      // the list says which agents exist now, so an empty fleet shows as empty and agents that
      // went away while the stream was down are dropped. What the stream already sent is newer.
      listAll(signal).then(
        (agents) => {
          // Applied even when the stream already failed: it is the newest full picture there is.
          if (signal.aborted || id !== this.attemptId) return;
          const names = new Set(agents.map((a) => a.name));
          for (const a of agents) if (!seen.has(a.name)) this.put(a);
          for (const name of [...this.agents.keys()]) {
            if (!names.has(name) && !seen.has(name)) {
              this.agents.delete(name);
              this.hist.delete(name);
            }
          }
          this.loaded = true;
          live();
          this.changed();
        },
        () => undefined, // the stream reports the same failure
      );
      try {
        for await (const ev of api.fleet.watchAgents({}, { signal })) {
          const agent = ev.agent;
          if (!agent) continue;
          seen.add(agent.name);
          if (ev.type === WatchAgentsResponse_EventType.REMOVED) {
            this.agents.delete(agent.name);
            this.hist.delete(agent.name);
          } else {
            this.put(agent);
          }
          live();
          this.changed();
        }
        // The server ended the watch (it restarts, or the watch fell behind): start again.
      } catch (err) {
        if (signal.aborted) return;
        const p = problem(err);
        if (p.code === Code.Unauthenticated && !getSession()) return; // signed out: the shell shows sign-in
        this.problem = p;
      }
      failed = true;
      if (signal.aborted) return;
      if (Date.now() - started > STABLE_MS) attempt = 0;
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
      const wait = base / 2 + (Math.random() * base) / 2;
      attempt++;
      this.phase = "reconnecting";
      this.retryAt = Date.now() + wait;
      this.changed();
      await sleep(wait, signal);
    }
  }
}

const store = new FleetStore();

/** The live fleet. The first caller opens the watch; it closes a minute after the last one goes. */
export function useFleet(): FleetState {
  return useSyncExternalStore(store.subscribe, store.getSnapshot);
}

/** An agent's rate points, oldest first (empty until two health reports have arrived). */
export function agentRates(name: string): RatePoint[] {
  return store.history(name);
}

/** Is the agent's newest rate point current (not from before it stopped reporting)? */
function fresh(p: RatePoint, now: number): boolean {
  return now - p.t <= Math.max(FRESH_MS, 3 * p.dt * 1000);
}

/** The agent's newest rate point while it is current; undefined before two reports or when stale. */
export function latestRate(name: string, now = Date.now()): RatePoint | undefined {
  const pts = store.history(name);
  const p = pts[pts.length - 1];
  return p && fresh(p, now) ? p : undefined;
}

/** The summed rate of `agents` over time (one point per `stepMs`), for a stage's sparkline. */
export function kindSeries(
  agents: Agent[],
  metric: keyof Rates,
  now = Date.now(),
  stepMs = 10_000,
): Point[] {
  const series = agents.map((a) => store.history(a.name)).filter((p) => p.length > 0);
  if (series.length === 0) return [];
  const start = Math.min(...series.map((pts) => pts[0].t - pts[0].dt * 1000));
  const out: Point[] = [];
  for (let t = Math.max(start, now - HISTORY_MS); t <= now; t += stepMs) {
    let v = 0;
    for (const pts of series) {
      const hit = pts.find((p) => t <= p.t && t >= p.t - p.dt * 1000);
      if (hit) v += hit[metric];
      else {
        const last = pts[pts.length - 1];
        if (t > last.t && fresh(last, t)) v += last[metric];
      }
    }
    out.push({ t, v });
  }
  return out;
}

/** Sum of the agents' current rates (0 for agents without a current point). */
export function currentRate(agents: Agent[], metric: keyof Rates, now = Date.now()): number | undefined {
  let any = false;
  let v = 0;
  for (const a of agents) {
    if (a.status === HealthStatus.OFFLINE) continue;
    const p = latestRate(a.name, now);
    if (p) {
      any = true;
      v += p[metric];
    }
  }
  return any ? v : undefined;
}
