// What to do when no agent has connected: the commands that start one.
import { CopyButton } from "../../components/ui";

const KEY_CMD = "floe keys create --role agent --kind service --display-name edge-agents";
const PROXY_CMD =
  "floe agent proxy --agent-name edge-01 --control-url CONTROL_PLANE:9090 --api-key-file agent.key --receivers http://RECEIVER:8080";

export function StartAgentHelp() {
  return (
    <div className="fleet-help">
      <p>
        Agents connect to the control plane and appear here by themselves. On one machine, <code>floe up</code> starts the
        whole pipeline (proxy, receiver, piper, packer, query and connector agents).
      </p>
      <p>To add an agent on another host, create a key with the agent role, save its secret to a file, and start the agent with it:</p>
      <div className="secret">
        <code>{KEY_CMD}</code>
        <CopyButton text={KEY_CMD} label="Copy command" />
      </div>
      <div className="secret">
        <code>{PROXY_CMD}</code>
        <CopyButton text={PROXY_CMD} label="Copy command" />
      </div>
    </div>
  );
}
