"""The CLI's end: find the user's server (starting one in the background when asked), check
that its folder, socket and process are the user's own, send a computation and relay what comes
back (notes, warnings, progress, then the result or the error). Anything that makes the server
unusable is a `ServerUnavailable`, whose message the CLI shows on one line before running the
command in process."""

from __future__ import annotations

import os
import socket
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from lazarus.errors import LazarusError, PromptError
from lazarus.serve import capture, codec, protocol
from lazarus.serve.protocol import environment

START_WAIT = 20.0  # seconds a server started in the background has to open its socket
GONE_WAIT = 1.0  # seconds a server gone mid-request has to finish dying (see _removed_once_dead)


class ServerUnavailable(Exception):
    """The server cannot be used: why, in one line."""


class NoServer(ServerUnavailable):
    """No server runs: no socket, or a stale one (`removed` now, see
    `protocol.remove_if_stale`)."""

    def __init__(self, message: str, removed: bool = False) -> None:
        super().__init__(message)
        self.removed = removed


def server_present() -> bool:
    """Whether a server's socket is there (a running server, or one that died)."""
    return os.path.lexists(protocol.socket_path())


def connect(start: bool, keep_alive: float | None = None) -> socket.socket:
    """A connection to this user's server, after checking that the folder and socket are
    private to the user and the process at the other end is theirs; with `start`, a server is
    started in the background when none answers."""
    folder, path = protocol.serve_dir(), protocol.socket_path()
    if os.path.lexists(folder):
        problem = protocol.privacy_problem(folder, directory=True)
        if problem is not None:
            raise ServerUnavailable(f"not using it: {problem}")
    if not os.path.lexists(path):
        if not start:
            raise NoServer(f"no server at {path}")
        return _start(keep_alive)
    problem = protocol.privacy_problem(path, directory=False)
    if problem is not None:
        raise ServerUnavailable(f"not using it: {problem}")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError as err:
        conn.close()
        if start:
            return _start(keep_alive)
        if isinstance(err, FileNotFoundError):  # gone since: it stopped
            raise NoServer(f"no server at {path}") from None
        if protocol.remove_if_stale():
            raise NoServer(f"no server answers at {path} ({err.strerror}; removed it)",
                           removed=True) from None
        raise ServerUnavailable(f"no server answers at {path} ({err.strerror})") from None
    uid = protocol.peer_uid(conn)
    if uid != os.getuid():
        conn.close()
        raise ServerUnavailable(f"not using it: the process at {path} runs as uid {uid}, "
                                f"not as you (uid {os.getuid()})")
    return conn


def _start(keep_alive: float | None) -> socket.socket:
    """Start `lazarus serve` detached (its log: server.log in its folder), then connect."""
    folder = protocol.serve_dir()
    try:
        protocol.make_private_dir(folder)
    except protocol.NotPrivate as err:
        raise ServerUnavailable(f"not using it: {err}") from None
    except OSError as err:
        raise ServerUnavailable(f"cannot create {folder}: {err.strerror}") from None
    command = [sys.executable, "-m", "lazarus", "serve"]
    if keep_alive is not None:
        command += ["--idle-timeout", f"{keep_alive:g}s"]
    fd = os.open(folder / "server.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        pid = _spawn(command, fd)
    finally:
        os.close(fd)
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if _ended(pid) and not os.path.lexists(protocol.socket_path()):
            raise ServerUnavailable(f"the server did not start (see {folder / 'server.log'})")
        if os.path.lexists(protocol.socket_path()):
            try:
                return connect(start=False)
            except ServerUnavailable:
                pass
        time.sleep(0.05)
    raise ServerUnavailable(f"the server did not answer within {START_WAIT:g} s")


def _spawn(command: list[str], log: int) -> int:
    """Start `command` in a session of its own, stdin and stdout on /dev/null, stderr on `log`:
    its pid. No `Popen` object is kept, which would warn (ResourceWarning) when dropped while
    the server, meant to outlive this command, still runs."""
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
               (os.POSIX_SPAWN_DUP2, log, 2)]
    return os.posix_spawn(command[0], command, os.environ, file_actions=actions, setsid=True)


def _ended(pid: int) -> bool:
    """Whether the child `pid` has exited (reaped here, so that it leaves no zombie)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def request(op: str) -> dict[str, Any]:
    """A `status` or `stop` request to a running server: its one reply."""
    with connect(start=False) as conn:
        try:
            protocol.send(conn, {"op": op, "version": protocol.VERSION})
            return protocol.receive(conn)
        except (OSError, EOFError, protocol.ProtocolError) as err:
            raise ServerUnavailable(f"the server did not answer ({err})") from None


def compute(spec: dict[str, Any], command: str, inputs: list[Any], *,
            keep_alive: float | None, progress: Callable[..., None] | None,
            notify: Callable[[str], None], warn: Callable[[str], None],
            echo: Callable[[str], None] | None = None) -> Any:
    """`command`'s result on the model of `spec`, computed by the server; its notes, warnings
    and progress are passed on as they come, what upstream code wrote to stderr to `echo`, and
    Python warnings are raised again here (`capture.warn_again`). A `LazarusError` is raised
    as in process."""
    if any(action == "error" for action, *_ in warnings.filters):
        # A warning raised on the server would be an exception in the middle of the run in
        # process; the server cannot stop there as that run would, so the run is made here.
        raise ServerUnavailable("not using it: warnings are turned into errors here (-W error "
                                "or PYTHONWARNINGS)")
    with connect(start=keep_alive is not None, keep_alive=keep_alive) as conn:
        try:
            protocol.send(conn, {"op": "compute", "version": protocol.VERSION,
                                 "command": command, "model": spec,
                                 "inputs": codec.encode(inputs), "keep_alive": keep_alive,
                                 "environment": environment()})
            while True:
                reply = protocol.receive(conn)
                kind = reply.get("type")
                if kind == "result":
                    return codec.decode(reply.get("value"))
                if kind == "error":
                    raise _error(reply)
                args = codec.decode(reply.get("args"))
                if kind == "note":
                    notify(*args)
                elif kind == "warn":
                    warn(*args)
                elif kind == "progress" and progress is not None:
                    progress(*args)
                elif kind == "stderr" and echo is not None:
                    echo(*args)
                elif kind == "warning":
                    try:
                        capture.warn_again(*args)
                    except Warning:  # a filter set since made it an error: as above
                        raise ServerUnavailable("a warning is an error here; the run in "
                                                "process raises it where it happens") from None
        except (OSError, EOFError, protocol.ProtocolError):
            stale = _removed_once_dead()
            raise ServerUnavailable("the server went away mid-request"
                                    + (" (removed its stale socket)" if stale else "")) from None
        except (codec.CodecError, TypeError, ValueError) as err:
            raise ServerUnavailable(f"the server sent a bad reply ({err})") from None


def _removed_once_dead() -> bool:
    """Whether the socket of a server gone mid-request was stale (`protocol.remove_if_stale`),
    and so removed now. A killed process may close this connection before its lock and
    listener: it is given a moment (`GONE_WAIT`); a server still running keeps its socket."""
    deadline = time.monotonic() + GONE_WAIT
    while not protocol.remove_if_stale():
        if not os.path.lexists(protocol.socket_path()) or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _error(reply: dict[str, Any]) -> Exception:
    """The exception an error reply stands for: a user's mistake as in process, else the
    server's trouble."""
    kind = reply.get("kind")
    if kind == "prompt":
        return PromptError(str(reply.get("prompt")), str(reply.get("problem")))
    if kind == "lazarus":
        return LazarusError(str(reply.get("message")))
    if kind == "unusable":
        return ServerUnavailable(f"not using it: {reply.get('message')}")
    return ServerUnavailable(f"the server could not compute it: {reply.get('message')}")
