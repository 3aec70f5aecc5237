"""The agent's side of the control stream (``floe.v1.AgentService/Connect``).

``ControlClient.run`` keeps one stream open for the life of the agent: it says hello with the
versions it runs, applies config updates one at a time and answers each (APPLIED or FAILED,
echoing the nonce), sends heartbeats and health reports on the server's intervals, runs
commands, and reconnects with jittered exponential backoff, honouring throttles. Nothing here
stops the data path: while the control plane is away the agent keeps its current config.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc

from floe.backoff import Backoff
from floe.client import channel_credentials
from floe.errors import from_grpc_error
from floe.v1 import agent_pb2, agent_pb2_grpc

__all__ = ["ControlClient", "Throttled"]

log = logging.getLogger(__name__)

UpdateHandler = Callable[[agent_pb2.ConfigUpdate], Awaitable[agent_pb2.ConfigAck]]
CommandHandler = Callable[[agent_pb2.Command], Awaitable[agent_pb2.CommandResult]]


class Throttled(Exception):
    """Raised when the server asks the agent to back off for ``retry_after`` seconds."""

    def __init__(self, retry_after: float, reason: str) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class ControlClient:
    """Keeps the control stream up. ``connected`` is set while a stream is established."""

    def __init__(
        self,
        target: str,
        api_key: str,
        *,
        hello: Callable[[], agent_pb2.AgentHello],
        on_update: UpdateHandler,
        on_command: CommandHandler,
        health: Callable[[], agent_pb2.HealthReport],
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        reconnect_max: float = 30.0,
    ) -> None:
        self._target = target
        self._metadata = (("authorization", f"Bearer {api_key}"),)
        self._hello = hello
        self._on_update = on_update
        self._on_command = on_command
        self._health = health
        self._ca_file = ca_file
        self._cert_file = cert_file
        self._key_file = key_file
        self._reconnect_max = reconnect_max
        self.connected = asyncio.Event()
        self.last_error = ""
        self.agent_resource = ""

    def _channel(self) -> grpc.aio.Channel:
        options = [
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        if self._ca_file is not None or self._cert_file is not None:
            creds = channel_credentials(self._ca_file, self._cert_file, self._key_file)
            return grpc.aio.secure_channel(self._target, creds, options=options)
        return grpc.aio.insecure_channel(self._target, options=options)

    async def run(self) -> None:
        """Connect, and reconnect forever; cancel to stop."""
        backoff = Backoff(0.5, self._reconnect_max)
        while True:
            hint: float | None = None
            started = time.monotonic()
            try:
                await self._session()
                self.last_error = "the control plane closed the stream"
            except Throttled as exc:
                hint = exc.retry_after
                self.last_error = f"throttled: {exc}"
            except grpc.aio.AioRpcError as exc:
                err = from_grpc_error(exc)
                self.last_error = str(err)
                hint = err.retry_after
                level = logging.ERROR if err.code == grpc.StatusCode.UNAUTHENTICATED else logging.WARNING
                log.log(level, "Control stream failed", extra={"error": str(err), "target": self._target})
            finally:
                self.connected.clear()
            if time.monotonic() - started > 30:
                backoff.reset()  # the last stream was healthy for a while: start backing off afresh
            wait = backoff.delay(hint)
            log.info("Reconnecting to the control plane", extra={"in_s": round(wait, 2)})
            await asyncio.sleep(wait)

    async def _session(self) -> None:
        outbound: asyncio.Queue[agent_pb2.ConnectRequest | None] = asyncio.Queue()
        sequence = 0

        def send(msg: agent_pb2.ConnectRequest) -> None:
            nonlocal sequence
            sequence += 1
            msg.sequence = sequence
            outbound.put_nowait(msg)

        async def requests() -> AsyncIterator[agent_pb2.ConnectRequest]:
            while True:
                msg = await outbound.get()
                if msg is None:
                    return
                yield msg

        tasks: list[asyncio.Task[None]] = []
        send(agent_pb2.ConnectRequest(hello=self._hello()))
        async with self._channel() as channel:
            call = agent_pb2_grpc.AgentServiceStub(channel).Connect(requests(), metadata=self._metadata)
            try:
                async for msg in call:
                    kind = msg.WhichOneof("message")
                    if kind == "welcome":
                        self.agent_resource = msg.welcome.agent
                        hb = max(msg.welcome.heartbeat_interval.ToNanoseconds() / 1e9, 0.1)
                        hi = max(msg.welcome.health_interval.ToNanoseconds() / 1e9, 0.1)
                        tasks.append(asyncio.create_task(self._heartbeats(send, hb)))
                        tasks.append(asyncio.create_task(self._reports(send, hi)))
                        self.connected.set()
                        log.info("Connected to the control plane", extra={"agent": msg.welcome.agent})
                    elif kind == "config_update":
                        ack = await self._on_update(msg.config_update)
                        send(agent_pb2.ConnectRequest(config_ack=ack))
                    elif kind == "command":
                        tasks.append(asyncio.create_task(self._command(send, msg.command)))
                    elif kind == "request_full_state":
                        send(agent_pb2.ConnectRequest(hello=self._hello()))
                    elif kind == "throttle":
                        raise Throttled(msg.throttle.retry_after.ToNanoseconds() / 1e9, msg.throttle.reason)
            finally:
                outbound.put_nowait(None)
                call.cancel()
                for task in tasks:
                    task.cancel()
                # gather, not a suppressed await per task: a cancel of *this* task (the agent
                # stopping) that lands while waiting here is passed on to the awaited task, and
                # suppressing its CancelledError would swallow the stop and keep reconnecting.
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _heartbeats(self, send: Callable[[agent_pb2.ConnectRequest], None], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            send(agent_pb2.ConnectRequest(heartbeat=agent_pb2.Heartbeat()))

    async def _reports(self, send: Callable[[agent_pb2.ConnectRequest], None], interval: float) -> None:
        """A report at once, then on the interval, and sooner when the status changes."""
        last_status = None
        last_sent = 0.0
        while True:
            report = self._health()
            now = time.monotonic()
            if report.status != last_status or now - last_sent >= interval:
                send(agent_pb2.ConnectRequest(health=report))
                last_status, last_sent = report.status, now
            await asyncio.sleep(min(interval, 1.0))

    async def _command(self, send: Callable[[agent_pb2.ConnectRequest], None], command: agent_pb2.Command) -> None:
        try:
            result = await self._on_command(command)
        except Exception as exc:  # a failed command is reported, never fatal
            log.exception("Command failed", extra={"command": command.WhichOneof("action")})
            result = agent_pb2.CommandResult(ok=False, message=f"{type(exc).__name__}: {exc}")
        result.id = command.id
        send(agent_pb2.ConnectRequest(command_result=result))
