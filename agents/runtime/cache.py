"""On-disk cache of the config an agent runs, so it restarts on its last-known-good config
when the control plane is away. One file per config type, written atomically and readable only
by the agent (``floe.files.write_private_file``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from floe.files import write_private_file
from floe.v1 import agent_pb2

__all__ = ["AppliedState", "ConfigCache"]


@dataclass
class AppliedState:
    """Where one config type stands on this agent."""

    #: The last version received and answered.
    version: str = ""
    status: int = agent_pb2.CONFIG_STATUS_UNSPECIFIED
    errors: list[str] = field(default_factory=list)
    #: The version running now (last APPLIED).
    effective_version: str = ""

    def to_proto(self, config_type: str) -> agent_pb2.AppliedConfig:
        return agent_pb2.AppliedConfig(
            config_type=config_type,
            version=self.version,
            status=self.status,  # type: ignore[arg-type]
            errors=self.errors,
            effective_version=self.effective_version,
        )


class ConfigCache:
    """``DIR/<type>.pb`` holds the effective ConfigUpdate; ``DIR/<type>.state.json`` its state."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)

    def load(self) -> dict[str, tuple[agent_pb2.ConfigUpdate | None, AppliedState]]:
        out: dict[str, tuple[agent_pb2.ConfigUpdate | None, AppliedState]] = {}
        for state_file in sorted(self.dir.glob("*.state.json")):
            config_type = state_file.name.removesuffix(".state.json")
            try:
                state = AppliedState(**json.loads(state_file.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # a damaged cache is ignored; the control plane resends
            update = None
            body = self.dir / f"{config_type}.pb"
            if body.exists():
                try:
                    update = agent_pb2.ConfigUpdate.FromString(body.read_bytes())
                except Exception:  # damaged: start without it
                    update = None
            out[config_type] = (update, state)
        return out

    def save(self, config_type: str, update: agent_pb2.ConfigUpdate | None, state: AppliedState) -> None:
        if update is not None:
            write_private_file(self.dir / f"{config_type}.pb", update.SerializeToString())
        write_private_file(self.dir / f"{config_type}.state.json", json.dumps(asdict(state)).encode())
