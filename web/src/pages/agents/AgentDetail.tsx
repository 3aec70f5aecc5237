// #/agents/{name}: one agent, live: status, identity, components of its last health report with
// rates, config versions (drift), last errors, and the commands it accepts.
import { useState, type ReactNode } from "react";
import { ConfigStatus, type CommandResult, type ComponentHealth } from "@sdk/agent_pb";
import type { Agent, AgentConfigState } from "@sdk/fleet_pb";
import { HealthStatus } from "@sdk/health_pb";
import { api } from "../../api";
import { Sparkline } from "../../components/Chart";
import { AgentFlags, agentErrors, kindText, LiveState, perSecond, StreamProblem } from "../../components/FleetBits";
import { Badge, ConfirmButton, EmptyState, ErrorNote, Loading, PageHeader, Stat, StatusBadge } from "../../components/ui";
import { agentRates, latestRate, useFleet, type RatePoint, type Rates } from "../../fleet";
import { ago, bytes, duration, enumLabel, num, seconds, when } from "../../format";
import { useAction, useTick } from "../../hooks";
import { href } from "../../router";
import { canWrite, getSession } from "../../session";

function Row({ label, children }: { label: string; children: ReactNode }) {
  return (
    <>
      <dt>{label}</dt>
      <dd>{children || <span className="muted">–</span>}</dd>
    </>
  );
}

function short(v: string): string {
  return v ? v.slice(0, 12) : "–";
}

function Summary({ a, now }: { a: Agent; now: number }) {
  const labels = Object.entries(a.labels);
  return (
    <section className="panel" aria-labelledby="agent-about">
      <h2 id="agent-about">About</h2>
      <dl className="fleet-dl">
        <Row label="Status">
          <StatusBadge status={a.status} /> {a.statusMessage}
        </Row>
        <Row label="Kind">{kindText(a.kind)}</Row>
        <Row label="Version">
          <span className="mono">{a.version}</span>
        </Row>
        <Row label="Hostname">{a.hostname}</Row>
        <Row label="API address">
          <span className="mono">{a.apiAddress}</span>
        </Row>
        <Row label="Connection">
          {a.connected ? `Connected since ${when(a.connectTime)} (${ago(a.connectTime, now)})` : "Disconnected"}
        </Row>
        <Row label="Last seen">
          {ago(a.lastSeenTime, now)} <span className="muted small">({when(a.lastSeenTime)})</span>
        </Row>
        <Row label="Heartbeat">
          {a.heartbeatInterval ? `every ${duration(seconds(a.heartbeatInterval))}; offline after three missed` : ""}
        </Row>
        <Row label="Instance">
          <span className="mono">{a.instanceId}</span>
        </Row>
        <Row label="Tenant">{a.tenant || <span className="muted">all tenants (unbound credential)</span>}</Row>
        <Row label="Credential">
          <span className="mono">{a.key}</span>
        </Row>
        <Row label="Labels">
          {labels.length > 0 && (
            <span className="fleet-badges">
              {labels.map(([k, v]) => (
                <Badge key={k} tone="info">
                  {k}={v}
                </Badge>
              ))}
            </span>
          )}
        </Row>
        <Row label="Capabilities">
          {a.capabilities.length > 0 && (
            <span className="fleet-badges">
              {a.capabilities.map((c) => (
                <Badge key={c}>{c}</Badge>
              ))}
            </span>
          )}
        </Row>
      </dl>
    </section>
  );
}

function rateOf(p: RatePoint | undefined, comp: string, m: keyof Rates): number | undefined {
  return p?.components[comp]?.[m];
}

function Components({ a, now }: { a: Agent; now: number }) {
  const report = a.lastHealth;
  const rate = latestRate(a.name, now);
  const comps = report?.components ?? [];
  return (
    <section aria-labelledby="agent-components">
      <h2 id="agent-components">Components</h2>
      {!report || comps.length === 0 ? (
        <p className="muted">No health report yet; agents report every few seconds after connecting.</p>
      ) : (
        <>
          <p className="muted small">
            From the report of {when(report.reportTime)} ({ago(report.reportTime, now)}). Totals count since the agent started;
            rates are computed in this browser since this page opened.
          </p>
          <div className="table-wrap">
            <table className="fleet-components">
              <thead>
                <tr>
                  <th scope="col">Component</th>
                  <th scope="col">Status</th>
                  <th scope="col" className="num">Events in</th>
                  <th scope="col" className="num">Events out</th>
                  <th scope="col" className="num">Bytes in / out</th>
                  <th scope="col" className="num">Backlog</th>
                  <th scope="col" className="num">DLQ</th>
                  <th scope="col" className="num">Lag</th>
                  <th scope="col" className="num">Errors</th>
                  <th scope="col">Dropped</th>
                  <th scope="col">Last flush</th>
                </tr>
              </thead>
              <tbody>
                {comps.map((c) => (
                  <ComponentRow key={c.name} c={c} rate={rate} now={now} />
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}

function ComponentRow({ c, rate, now }: { c: ComponentHealth; rate: RatePoint | undefined; now: number }) {
  const dropped = Object.entries(c.dropped).filter(([, n]) => n > 0n);
  const lag = seconds(c.lag);
  return (
    <tr>
      <td>
        <span className="mono">{c.name}</span>
        <div className="muted small">{c.kind}</div>
      </td>
      <td>
        <StatusBadge status={c.status} />
        {c.message && <div className="small fleet-clip" title={c.message}>{c.message}</div>}
      </td>
      <td className="num">
        {num(c.eventsIn)}
        <div className="muted small">{perSecond(rateOf(rate, c.name, "eventsIn"))}</div>
      </td>
      <td className="num">
        {num(c.eventsOut)}
        <div className="muted small">{perSecond(rateOf(rate, c.name, "eventsOut"))}</div>
      </td>
      <td className="num">
        {bytes(c.bytesIn)}
        <div className="muted small">{bytes(c.bytesOut)}</div>
      </td>
      <td className="num">{num(c.backlog)}</td>
      <td className="num">{c.dlqSize > 0n ? <a href={href("dlq")}>{num(c.dlqSize)}</a> : num(c.dlqSize)}</td>
      <td className="num">{lag > 0 ? duration(lag) : "–"}</td>
      <td className="num">{c.errors > 0n ? <strong className="fleet-bad">{num(c.errors)}</strong> : "0"}</td>
      <td className="small">
        {dropped.length === 0 ? (
          <span className="muted">none</span>
        ) : (
          <ul className="fleet-plain">
            {dropped.map(([reason, n]) => (
              <li key={reason}>
                {reason}: {num(n)}
              </li>
            ))}
          </ul>
        )}
      </td>
      <td className="small">{c.lastFlushTime ? ago(c.lastFlushTime, now) : <span className="muted">never</span>}</td>
    </tr>
  );
}

function drifted(c: AgentConfigState): boolean {
  return !!c.desiredVersion && c.effectiveVersion !== c.desiredVersion;
}

function Configs({ a }: { a: Agent }) {
  return (
    <section aria-labelledby="agent-configs">
      <h2 id="agent-configs">Config versions</h2>
      {a.configs.length === 0 ? (
        <p className="muted">This agent subscribes to no config from the control plane.</p>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Type</th>
                <th scope="col">Desired</th>
                <th scope="col">Reported</th>
                <th scope="col">Effective</th>
                <th scope="col">Status</th>
                <th scope="col">Errors</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {a.configs.map((c) => {
                const drift = drifted(c);
                return (
                  <tr key={c.configType} className={drift ? "fleet-drift" : undefined}>
                    <td>
                      <strong>{c.configType}</strong> {drift && <Badge tone="warn">Drift</Badge>}
                    </td>
                    <td className="mono small" title={c.desiredVersion}>{short(c.desiredVersion)}</td>
                    <td className="mono small" title={c.reportedVersion}>{short(c.reportedVersion)}</td>
                    <td className="mono small" title={c.effectiveVersion}>{short(c.effectiveVersion)}</td>
                    <td>
                      <ConfigBadge status={c.status} />
                    </td>
                    <td className="small">
                      {c.errors.length === 0 ? (
                        <span className="muted">none</span>
                      ) : (
                        <ul className="fleet-plain">
                          {c.errors.map((e, i) => (
                            <li key={i}>{e}</li>
                          ))}
                        </ul>
                      )}
                    </td>
                    <td className="small">{when(c.updateTime)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function ConfigBadge({ status }: { status: ConfigStatus }) {
  const tone = status === ConfigStatus.APPLIED ? "ok" : status === ConfigStatus.FAILED ? "bad" : status === ConfigStatus.PENDING ? "info" : "off";
  return <Badge tone={tone}>{status === ConfigStatus.UNSPECIFIED ? "Not reported" : enumLabel(ConfigStatus, status)}</Badge>;
}

function LastErrors({ a }: { a: Agent }) {
  const errors = agentErrors(a);
  return (
    <section className="panel" aria-labelledby="agent-errors">
      <h2 id="agent-errors">Last errors</h2>
      {errors.length === 0 ? (
        <p className="muted">No errors reported: every config applied and every component is healthy.</p>
      ) : (
        <ul className="fleet-errors">
          {errors.map((e, i) => (
            <li key={i}>
              <strong>{e.where}</strong>: {e.what}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function Outcome({ result }: { result: CommandResult }) {
  const details = Object.entries(result.details);
  return (
    <div className={result.ok ? "notice" : "error-note"} role={result.ok ? "status" : "alert"}>
      <strong>{result.ok ? "Done" : "The agent refused"}:</strong> {result.message || (result.ok ? "no message" : "no reason given")}
      {details.length > 0 && (
        <dl className="fleet-dl small">
          {details.map(([k, v]) => (
            <Row key={k} label={k}>
              <span className="mono">{v}</span>
            </Row>
          ))}
        </dl>
      )}
    </div>
  );
}

function CommandAction({
  a,
  label,
  run,
  confirm,
}: {
  a: Agent;
  label: string;
  run: () => Promise<CommandResult | undefined>;
  confirm?: string;
}) {
  const [result, setResult] = useState<CommandResult>();
  const action = useAction(async () => {
    setResult(undefined);
    setResult(await run());
  });
  const disabled = !a.connected || action.busy;
  return (
    <div className="fleet-command">
      <div className="row-actions">
        {confirm && !disabled ? (
          <ConfirmButton className="secondary" question={confirm} busy={action.busy} onConfirm={() => void action.run()}>
            {label}
          </ConfirmButton>
        ) : (
          <button type="button" className="secondary" disabled={disabled} onClick={() => void action.run()}>
            {action.busy ? `${label}…` : label}
          </button>
        )}
      </div>
      <ErrorNote error={action.error} />
      {result && <Outcome result={result} />}
    </div>
  );
}

function Actions({ a }: { a: Agent }) {
  const send = async (action: "retryDlq" | "reload") => {
    const r = await api.fleet.sendCommand({
      agent: a.name,
      command: { action: action === "retryDlq" ? { case: "retryDlq", value: { items: [] } } : { case: "reload", value: {} } },
      timeout: { seconds: 30n },
    });
    return r.result;
  };
  const dlq = (a.lastHealth?.components ?? []).reduce((n, c) => n + c.dlqSize, 0n);
  return (
    <section className="panel" aria-labelledby="agent-actions">
      <h2 id="agent-actions">Commands</h2>
      {!canWrite(getSession()) ? (
        <p className="muted">Your role can view agents but not send them commands.</p>
      ) : (
        <>
          {!a.connected && <p className="muted">The agent is disconnected; commands reach connected agents only.</p>}
          <div className="fleet-commands">
            <div>
              <h3>Retry dead letters</h3>
              <p className="muted small">
                Move every dead-lettered batch ({num(dlq)} now) back to the delivery queue, e.g. after fixing what refused them.
              </p>
              <CommandAction
                a={a}
                label="Retry DLQ"
                confirm="Move every dead-lettered batch back to the queue?"
                run={() => send("retryDlq")}
              />
            </div>
            <div>
              <h3>Reload</h3>
              <p className="muted small">Re-apply the agent's config (a proxy re-binds its listeners).</p>
              <CommandAction a={a} label="Reload" run={() => send("reload")} />
            </div>
          </div>
        </>
      )}
    </section>
  );
}

export function AgentDetail({ id }: { id: string }) {
  const fleet = useFleet();
  useTick(1000);
  const now = Date.now();
  const name = `agents/${id}`;
  const a = fleet.byName.get(name);
  const back = (
    <p className="fleet-back">
      <a href={href("agents")}>← All agents</a>
    </p>
  );
  if (!a) {
    return (
      <section className="fleet-page" aria-labelledby="page-title">
        {back}
        <PageHeader title={id}>
          <LiveState fleet={fleet} />
        </PageHeader>
        <StreamProblem fleet={fleet} />
        {!fleet.loaded ? (
          fleet.problem ? null : <Loading what="Loading the agent" />
        ) : (
          <EmptyState title={`No agent named ${id}`}>
            <p>It never connected to this control plane, or your credential does not let you see it.</p>
            <a className="button secondary" href={href("agents")}>
              See all agents
            </a>
          </EmptyState>
        )}
      </section>
    );
  }
  const rates = agentRates(a.name).filter((p) => p.t >= now - 15 * 60_000);
  const rate = latestRate(a.name, now);
  const comps = a.lastHealth?.components ?? [];
  const backlog = comps.reduce((n, c) => n + c.backlog, 0n);
  const dlq = comps.reduce((n, c) => n + c.dlqSize, 0n);
  return (
    <section className="fleet-page" aria-labelledby="page-title">
      {back}
      <PageHeader
        title={id}
        sub={
          <span className="fleet-badges">
            {kindText(a.kind)} agent{a.hostname ? ` on ${a.hostname}` : ""} <StatusBadge status={a.status} /> <AgentFlags agent={a} />
          </span>
        }
      >
        <LiveState fleet={fleet} />
      </PageHeader>
      <StreamProblem fleet={fleet} />
      {a.statusMessage && a.status !== HealthStatus.HEALTHY && (
        <div className={a.status === HealthStatus.OFFLINE ? "notice" : "error-note"}>{a.statusMessage}</div>
      )}
      <div className="stats">
        <Stat label="Events in" value={rate || !a.connected ? perSecond(rate?.eventsIn) : "collecting…"}>
          <Sparkline points={rates.map((p) => ({ t: p.t, v: p.eventsIn }))} label="Events in per second" />
        </Stat>
        <Stat label="Events out" value={rate || !a.connected ? perSecond(rate?.eventsOut) : "collecting…"}>
          <Sparkline points={rates.map((p) => ({ t: p.t, v: p.eventsOut }))} label="Events out per second" />
        </Stat>
        <Stat label="Backlog" value={num(backlog)} />
        <Stat label="DLQ size" value={dlq > 0n ? <a href={href("dlq")}>{num(dlq)}</a> : num(dlq)} />
      </div>
      <p className="muted small">Charts show the history collected since this page opened ({new Date(fleet.since || now).toLocaleTimeString()}).</p>
      <Components a={a} now={now} />
      <Configs a={a} />
      <div className="grid-2 fleet-grid">
        <LastErrors a={a} />
        <Actions a={a} />
      </div>
      <Summary a={a} now={now} />
    </section>
  );
}
