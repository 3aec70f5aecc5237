// #/agents (the live list) and #/agents/{name} (one agent).
import "./Agents.css";
import { AgentDetail } from "./agents/AgentDetail";
import { AgentList } from "./agents/AgentList";

export function Agents({ path }: { path: string[] }) {
  return path.length > 0 ? <AgentDetail key={path[0]} id={path[0]} /> : <AgentList />;
}
