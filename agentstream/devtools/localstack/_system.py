"""Operating-system helpers of the local stack: ports, processes, tools, files."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from agentstream.core.errors import ConfigError, LocalStackError, PortInUseError, ToolMissingError

__all__ = [
    "check_ports_free",
    "file_lock",
    "find_tool",
    "format_bootstrap",
    "free_ports",
    "parse_java_major",
    "pid_alive",
    "port_in_use",
    "process_cmdline",
    "read_pid_file",
    "tail_lines",
    "terminate",
]

_POLL_S = 0.1


def format_bootstrap(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _addresses(host: str, port: int) -> list[tuple[socket.AddressFamily, tuple[object, ...]]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"AGENTSTREAM_LOCAL_KAFKA__HOST: cannot resolve {host!r}: {exc}") from exc
    return [(family, tuple(addr)) for family, _, _, _, addr in infos]


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails because something else holds it.

    Binds with ``SO_REUSEADDR`` like the JVM does, so sockets in TIME_WAIT left by
    a stopped broker do not count as taken.
    """
    for family, addr in _addresses(host, port):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
                if exc.errno == errno.EACCES:
                    raise LocalStackError(
                        f"not allowed to listen on {format_bootstrap(host, port)}: choose a port "
                        "above 1023 (AGENTSTREAM_LOCAL_KAFKA__PORT / __CONTROLLER_PORT)"
                    ) from exc
                raise LocalStackError(
                    f"cannot listen on {format_bootstrap(host, port)}: {exc.strerror}"
                ) from exc
    return False


def check_ports_free(host: str, ports: Iterable[int]) -> None:
    """Raise :class:`PortInUseError` for the first of ``ports`` that is taken."""
    for port in ports:
        if port_in_use(host, port):
            raise PortInUseError(host, port)


def free_ports(host: str = "127.0.0.1", count: int = 1) -> list[int]:
    """``count`` distinct ports the OS reports free on ``host`` right now."""
    family, addr = _addresses(host, 0)[0]
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
            sock.bind(addr)
            ports.append(int(sock.getsockname()[1]))
        return ports


def find_tool(program: str, setting: str, purpose: str) -> str:
    """The full path of ``program`` (a name on PATH or a path), else :class:`ToolMissingError`."""
    found = shutil.which(program)
    if found is None:
        raise ToolMissingError(
            f"{program!r} not found ({purpose}): install it or set {setting} to its path"
        )
    return found


_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def parse_java_major(version_output: str) -> int | None:
    """The major version in ``java -version`` output (``1.8.0`` → 8, ``17.0.15`` → 17)."""
    match = _JAVA_VERSION.search(version_output)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:
        return int(match.group(2))
    return major


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a zombie child is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    if stat.rpartition(")")[2].split()[:1] == ["Z"]:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def process_cmdline(pid: int) -> list[str]:
    """The command line of ``pid`` (empty if it is gone or unreadable)."""
    if Path("/proc/self").exists():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return []
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    try:  # no procfs (macOS): argument boundaries are lost, which is fine for a search
        out = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return []
    return out.stdout.split()


def read_pid_file(path: Path) -> int | None:
    """The pid in ``path``, or None if it is missing or garbled."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def terminate(pid: int, grace_s: float) -> None:
    """SIGTERM ``pid``, wait up to ``grace_s``, then SIGKILL; return once it is gone."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(_POLL_S)
    raise LocalStackError(f"process {pid} survived SIGKILL")


def tail_lines(path: Path, count: int, start: int = 0) -> list[str]:
    """The last ``count`` lines of a text file after byte ``start`` (empty if none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(start, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-count:]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed), across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
