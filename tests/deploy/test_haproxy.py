"""deploy/haproxy.cfg in front of two real server processes (fixed-cost engine), all on loopback.

The config is the deployed file with loopback ports and a socket path put in (and, when not
root, without its chroot and user switch). Clients stream espeak-ng speech at real-time pace
through HAProxy; which replica serves a session is read from the X-STT-Replica response header
and checked against each replica's own /health count. Figures are printed (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from stt_server.audio import SAMPLE_RATE, encode_pcm16
from tests.conftest import REPO, free_port
from tests.nix.nixtools import ensure_tool
from tests.stt_server.speech import make_recording

CONFIG = REPO / "deploy" / "haproxy.cfg"
BACKEND = "stt"
FRAME = SAMPLE_RATE // 50  # 20 ms
# Two sentences 0.5 s apart, looped: the turn never ends on its own (no 1.5 s pause), so at
# any moment after the first words a session is mid-utterance.
SENTENCES = (
    "Please call Stella and ask her to bring these things from the store.",
    "We also need a small plastic snake and a big toy frog for the kids.",
)
DRAIN_TIMEOUT = 20


@pytest.fixture(scope="module")
def haproxy() -> str:
    return ensure_tool("haproxy", "haproxy")


@pytest.fixture(scope="module")
def speech() -> npt.NDArray[np.float32]:
    return make_recording(SENTENCES, (0.5, 0.5)).audio


def render(replicas: dict[str, int], front: int, stats_socket: Path) -> str:
    """deploy/haproxy.cfg with the frontend on 127.0.0.1:`front` and one server line per
    replica (the file's first server names, in order); every other line as in the file."""
    text = CONFIG.read_text()
    servers = re.findall(r"^    server (\S+) \S+$", text, flags=re.MULTILINE)
    assert list(replicas) == servers[: len(replicas)], servers
    text, binds = re.subn(r"^    bind :15751$", f"    bind 127.0.0.1:{front}", text, flags=re.M)
    assert binds == 1
    text, sockets = re.subn(
        r"^(    stats socket )/run/haproxy/admin.sock( .*)$",
        rf"\g<1>{stats_socket}\g<2>",
        text,
        flags=re.MULTILINE,
    )
    assert sockets == 1
    for name in servers:
        line = rf"^    server {name} \S+\n"
        port = replicas.get(name)
        new = f"    server {name} 127.0.0.1:{port}\n" if port else ""
        text, count = re.subn(line, new, text, flags=re.MULTILINE)
        assert count == 1
    if os.geteuid() != 0:
        # chroot and the user switch need root; nothing else depends on them.
        text = re.sub(r"^    (chroot|user|group) .*\n", "", text, flags=re.MULTILINE)
    return text


def test_render_changes_only_addresses_and_paths(tmp_path: Path) -> None:
    rendered = render({"gpu0": 1001, "gpu1": 1002}, 1000, tmp_path / "admin.sock")
    assert "    bind 127.0.0.1:1000\n" in rendered
    assert "    server gpu0 127.0.0.1:1001\n    server gpu1 127.0.0.1:1002\n" in rendered
    assert "gpu2" not in rendered
    assert f"stats socket {tmp_path / 'admin.sock'} mode 660 level admin" in rendered
    original = CONFIG.read_text().splitlines()
    kept = [line for line in original if not re.match(r"    (server|bind|stats socket) ", line)]
    if os.geteuid() != 0:
        kept = [line for line in kept if not re.match(r"    (chroot|user|group) ", line)]
    assert [line for line in rendered.splitlines() if line in kept] == kept
    assert len(rendered.splitlines()) == len(kept) + 4  # bind, socket, two servers


def test_deployed_config_is_valid(haproxy: str) -> None:
    done = subprocess.run([haproxy, "-c", "-f", str(CONFIG)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    text = CONFIG.read_text()
    for setting in (
        "balance leastconn",
        "option http-server-close",
        "http-check send meth GET uri /ready",
        "http-check expect status 200",
        "timeout tunnel",
        "timeout client-fin",
    ):
        assert f"    {setting}" in text, setting
    # Marking a full or draining replica down must not cut its open sessions.
    assert "shutdown-sessions" not in re.sub(r"#.*", "", text)


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: IO[str]

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()


@dataclass
class Cluster:
    url: str  # the balancer's WebSocket URL
    replicas: dict[str, str]  # server name -> host:port
    processes: dict[str, Process]
    stats_socket: Path

    def stat(self) -> dict[str, str]:
        """HAProxy's view: server name -> status (UP, DOWN, "UP 1/2" while it changes, ...)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_socket))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        lines = data.decode().strip().splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == BACKEND and row["svname"] in self.replicas
        }

    async def server_status(self) -> dict[str, str]:
        return await asyncio.to_thread(self.stat)

    async def wait_status(self, name: str, status: str, seconds: float = 15) -> float:
        """Wait until HAProxy shows `name` as exactly `status`; returns how long it took."""
        start = time.monotonic()
        while (await self.server_status()).get(name) != status:
            if time.monotonic() - start > seconds:
                pytest.fail(f"{name} not {status}: {await self.server_status()}")
            await asyncio.sleep(0.05)
        return time.monotonic() - start

    async def sessions(self) -> dict[str, int]:
        """Open sessions as each replica counts them (its /health), for the replicas that take
        sessions (a draining one answers 503, an exited one not at all)."""
        counts = {}
        async with httpx.AsyncClient(timeout=5) as client:
            for name, address in self.replicas.items():
                with contextlib.suppress(httpx.TransportError):
                    answer = await client.get(f"http://{address}/health")
                    if answer.status_code == 200:
                        counts[name] = answer.json()["sessions"]
        return counts

    async def ready(self, name: str) -> tuple[int, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(f"http://{self.replicas[name]}/ready")
            return answer.status_code, answer.json()


def _start(name: str, command: list[str], logs: Path) -> Process:
    log = (logs / f"{name}.log").open("w+")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "STT_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Process(name, proc, log)


def _wait_ready(process: Process, address: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if process.proc.poll() is not None:
            pytest.fail(
                f"{process.name} exited with {process.proc.returncode}:\n{process.output()}"
            )
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://{address}/ready", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"{process.name} not ready:\n{process.output()}")
        time.sleep(0.1)


@pytest.fixture
def fleet(haproxy: str, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """One replica per entry of the parameter, {server name: --max-sessions}, and HAProxy
    with the rendered config; stopped (killed if need be) afterwards."""
    max_sessions: dict[str, int] = request.param
    ports = {name: free_port() for name in max_sessions}
    front = free_port()
    processes: dict[str, Process] = {}
    with tempfile.TemporaryDirectory(prefix="stt-haproxy-") as tmp:
        work = Path(tmp)
        # Made by HAProxy before it drops root, in a directory only its owner may enter.
        stats_socket = work / "admin.sock"
        config = work / "haproxy.cfg"
        config.write_text(render(ports, front, stats_socket))
        try:
            for name, port in ports.items():
                command = [sys.executable, "-m", "stt_server", "--engine", "fixed-cost"]
                command += ["--model", "50ms", "--host", "127.0.0.1", "--port", str(port)]
                command += ["--max-sessions", str(max_sessions[name])]
                command += ["--drain-timeout", str(DRAIN_TIMEOUT), "--log-level", "info"]
                processes[name] = _start(name, command, work)
            for name, port in ports.items():
                _wait_ready(processes[name], f"127.0.0.1:{port}")
            checked = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True)
            assert checked.returncode == 0, checked.stdout + checked.stderr
            processes["haproxy"] = _start("haproxy", [haproxy, "-db", "-f", str(config)], work)
            replicas = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
            result = Cluster(
                f"ws://127.0.0.1:{front}/ws/transcribe", replicas, processes, stats_socket
            )
            _wait_all_up(result)
            yield result
        finally:
            for process in processes.values():
                if process.proc.poll() is None:
                    process.proc.terminate()
            for process in processes.values():
                try:
                    process.proc.wait(DRAIN_TIMEOUT + 10)
                except subprocess.TimeoutExpired:
                    process.proc.kill()
                    process.proc.wait()
                process.log.close()


def _wait_all_up(result: Cluster, seconds: float = 30) -> None:
    haproxy = result.processes["haproxy"]
    deadline = time.monotonic() + seconds
    while True:
        if haproxy.proc.poll() is not None:
            pytest.fail(f"haproxy exited with {haproxy.proc.returncode}:\n{haproxy.output()}")
        with contextlib.suppress(OSError):
            status = result.stat()
            if list(status.values()) == ["UP"] * len(result.replicas):
                return
        if time.monotonic() > deadline:
            pytest.fail(f"replicas not all UP in HAProxy:\n{haproxy.output()}")
        time.sleep(0.1)


@dataclass
class Session:
    """A client that streams speech at real-time pace, looping it, until released; then it
    ends its input with `{"type": "end"}` and reads until the server closes."""

    ws: ClientConnection
    audio: npt.NDArray[np.float32]
    replica: str
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed_at: float = 0.0  # when the connection closed (time.monotonic)

    @classmethod
    async def open(cls, url: str, audio: npt.NDArray[np.float32]) -> Session:
        ws = await websockets.connect(url, open_timeout=30)
        assert ws.response is not None
        session = cls(ws, audio, ws.response.headers["X-STT-Replica"])
        session.tasks = [asyncio.create_task(session._talk()), asyncio.create_task(session._read())]
        return session

    async def _talk(self) -> None:
        start = time.monotonic()
        frames = 0
        with contextlib.suppress(websockets.ConnectionClosed):
            while not self.released.is_set():
                offset = frames * FRAME % (len(self.audio) - FRAME)
                await self.ws.send(encode_pcm16(self.audio[offset : offset + FRAME]))
                frames += 1
                await asyncio.sleep(max(0.0, start + frames * 0.02 - time.monotonic()))
            await self.ws.send(json.dumps({"type": "end"}))

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self.messages.append((time.monotonic(), json.loads(raw)))
        self.closed_at = time.monotonic()

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    def finals(self, after: float = 0.0) -> int:
        return sum(1 for at, m in self.messages if m.get("isFinal") and at >= after)

    def errors(self) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if "code" in m]

    async def heard(self, seconds: float = 20) -> None:
        """Wait until the server has sent a segment: the session is mid-utterance."""
        deadline = time.monotonic() + seconds
        while not self.messages:
            if time.monotonic() > deadline:
                pytest.fail(f"no segment from {self.replica} within {seconds}s")
            await asyncio.sleep(0.05)

    async def closed(self, seconds: float = 30) -> None:
        """Wait until the server has closed the connection (without releasing the client)."""
        await asyncio.wait_for(self.tasks[1], seconds)
        self.released.set()
        await asyncio.wait_for(self.tasks[0], 5)

    async def finish(self, seconds: float = 30) -> None:
        """End the input and wait for the server to transcribe the rest and close."""
        self.released.set()
        try:
            await asyncio.wait_for(asyncio.gather(*self.tasks), seconds)
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.ws.close()


def per_replica(sessions: list[Session]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for session in sessions:
        counts[session.replica] = counts.get(session.replica, 0) + 1
    return counts


async def open_one_by_one(
    fleet: Cluster, audio: npt.NDArray[np.float32], count: int, owned: list[Session]
) -> list[Session]:
    """Open `count` sessions through the balancer, each once the replicas count the one
    before (so HAProxy's choice sees every earlier session). Each is appended to `owned` (the
    caller finishes them) as it opens; returns the new ones."""
    new: list[Session] = []
    base = sum((await fleet.sessions()).values())
    for opened in range(1, count + 1):
        session = await Session.open(fleet.url, audio)
        owned.append(session)
        new.append(session)
        deadline = time.monotonic() + 15
        while sum((counts := await fleet.sessions()).values()) != base + opened:
            if time.monotonic() > deadline:
                pytest.fail(f"session {opened} not counted: {counts}, {session.messages}")
            await asyncio.sleep(0.05)
    return new


@pytest.mark.slow
@pytest.mark.parametrize("fleet", [{"gpu0": 3, "gpu1": 100}], indirect=True)
async def test_sessions_spread_and_a_full_replica_gets_no_new_ones(
    fleet: Cluster, speech: npt.NDArray[np.float32]
) -> None:
    owned: list[Session] = []
    try:
        # (a) leastconn: six sessions opened one by one, three on each replica.
        first = await open_one_by_one(fleet, speech, 6, owned)
        assert per_replica(first) == {"gpu0": 3, "gpu1": 3}
        assert await fleet.sessions() == {"gpu0": 3, "gpu1": 3}
        print(f"\nspread: sessions per replica {per_replica(first)}")

        # (b) gpu0 is at its --max-sessions of 3: /ready says full and HAProxy takes it out.
        assert await fleet.ready("gpu0") == (503, {"status": "full"})
        assert await fleet.ready("gpu1") == (200, {"status": "ready"})
        marked = await fleet.wait_status("gpu0", "DOWN")
        more = await open_one_by_one(fleet, speech, 4, owned)
        assert per_replica(more) == {"gpu1": 4}
        assert await fleet.sessions() == {"gpu0": 3, "gpu1": 7}
        assert (await fleet.server_status())["gpu0"] == "DOWN"
        # Its open sessions went on meanwhile: out of rotation is not cut off.
        on_gpu0 = [s for s in first if s.replica == "gpu0"]
        assert all(s.close_code is None for s in on_gpu0)

        # One session on gpu0 ends: ready again, back in rotation, and with the fewest open
        # sessions it gets the next one.
        await on_gpu0[0].finish()
        assert await fleet.ready("gpu0") == (200, {"status": "ready"})
        back = await fleet.wait_status("gpu0", "UP")
        last = await open_one_by_one(fleet, speech, 1, owned)
        assert per_replica(last) == {"gpu0": 1}
        assert await fleet.sessions() == {"gpu0": 3, "gpu1": 7}
        print(
            f"full: gpu0 DOWN {marked:.2f}s after /ready said full, UP {back:.2f}s after a session "
            f"ended; sessions per replica then {await fleet.sessions()}"
        )
        for session in owned:
            await session.heard()  # so that each has a turn to finish
    finally:
        await asyncio.gather(*(s.finish() for s in owned), return_exceptions=True)
    for session in owned:
        assert session.close_code == 1000, session.messages
        assert not session.errors(), session.messages
        assert session.finals() == 1, session.messages


async def exit_of(proc: subprocess.Popen[bytes], seconds: float) -> tuple[int, float]:
    """Wait (without blocking the event loop) for `proc` to exit; its status and when."""
    status = await asyncio.wait_for(asyncio.to_thread(proc.wait), seconds)
    return status, time.monotonic()


@pytest.mark.slow
@pytest.mark.parametrize("fleet", [{"gpu0": 100, "gpu1": 100}], indirect=True)
async def test_sigterm_drains_one_replica_while_the_other_takes_new_sessions(
    fleet: Cluster, speech: npt.NDArray[np.float32]
) -> None:
    owned: list[Session] = []
    server = fleet.processes["gpu0"].proc
    try:
        before = await open_one_by_one(fleet, speech, 6, owned)
        assert per_replica(before) == {"gpu0": 3, "gpu1": 3}
        for session in before:
            await session.heard()  # mid-utterance: the turn is open
        draining = [s for s in before if s.replica == "gpu0"]
        staying = [s for s in before if s.replica == "gpu1"]

        server.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        exiting = asyncio.create_task(exit_of(server, DRAIN_TIMEOUT + 10))
        # Arrives before HAProxy can have noticed: gpu0 refuses it with the documented
        # SHUTTING_DOWN (1001), or it reaches gpu1 (picked there, or redispatched once gpu0 has
        # stopped listening).
        window = await Session.open(fleet.url, speech)
        owned.append(window)
        for session in draining:
            await session.closed(DRAIN_TIMEOUT)
        drained = max(s.closed_at for s in draining) - signalled
        await fleet.wait_status("gpu0", "DOWN")
        marked = time.monotonic() - signalled

        after = await open_one_by_one(fleet, speech, 3, owned)
        assert per_replica(after) == {"gpu1": 3}
        status, exit_time = await exiting
        assert status == 0, fleet.processes["gpu0"].output()
        exited = exit_time - signalled
        # The other replica's sessions never noticed.
        assert all(s.close_code is None for s in staying)
        served = [*after, window] if window.replica == "gpu1" else after
        for session in served:
            await session.heard()  # so that each has a turn to finish
    finally:
        await asyncio.gather(*(s.finish() for s in owned), return_exceptions=True)

    finals_in_drain = [s.finals(after=signalled) for s in draining]
    for session in draining:
        assert session.close_code == 1001, session.messages
        assert not session.errors(), session.messages
        # The open turn was finished: its final is the last thing the client got.
        assert session.finals(after=signalled) == 1, session.messages
        assert session.messages[-1][1]["isFinal"], session.messages
    if window.replica == "gpu0":
        assert [m.get("code") for _, m in window.messages] == ["SHUTTING_DOWN"]
        assert window.close_code == 1001
    for session in staying + served:
        assert session.close_code == 1000, session.messages
        assert not session.errors(), session.messages
        assert session.finals() == 1, session.messages
    output = fleet.processes["gpu0"].output()
    assert "draining 3 session(s)" in output, output
    print(
        f"\ndrain: sessions per replica before SIGTERM {per_replica(before)}; finals delivered "
        f"during the drain {finals_in_drain}; last drained session closed (1001) "
        f"{drained:.2f}s after SIGTERM; gpu0 DOWN in HAProxy after {marked:.2f}s; process "
        f"exited (status 0) after {exited:.2f}s; new sessions {per_replica(after)}, and one "
        f"right after SIGTERM: {window.replica} ({window.close_code})"
    )
