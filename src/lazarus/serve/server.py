"""`lazarus serve`: accept the CLI's requests on the private socket, compute each on a warm
model (`runner`) and send the result back. One thread per connection; what a request says
(notes, warnings, progress, and upstream's stderr and Python warnings: `capture`) goes back to
its client as it happens; a client that goes away (Ctrl-C) stops its computation at the next
progress step, or has its result discarded; garbage gets an error reply and the server carries
on. Stops after `idle_timeout` seconds without a request."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from lazarus import __version__
from lazarus.errors import LazarusError
from lazarus.serve import capture, codec, protocol
from lazarus.serve.commands import COMMANDS
from lazarus.serve.pool import Pool
from lazarus.serve.protocol import environment
from lazarus.serve.runner import Cancelled, Request


class Server:
    def __init__(self, idle_timeout: float, max_bytes: int | None,
                 log: Callable[[str], None]) -> None:
        self.idle_timeout = idle_timeout
        self.pool = Pool(max_bytes)
        self._log = log
        self.started = time.time()
        self.last_activity = time.monotonic()
        self.active = 0
        self.stopping = threading.Event()
        self._count = threading.Lock()

    def log(self, line: str) -> None:
        with capture.unrouted():  # from a computing thread too, to the log
            self._log(line)

    def run(self) -> None:
        """Serve until stopped (`stop` request, idle timeout, Ctrl-C); the socket is removed."""
        folder = protocol.serve_dir()
        protocol.make_private_dir(folder)
        with open(folder / "server.lock", "w") as lock:
            try:  # held while serving: a second server started at once gives way
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LazarusError(f"a keep-alive server is already running in {folder} (see "
                                   "lazarus serve --status)") from None
            path = protocol.socket_path()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # left by a server that was killed
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)  # the socket is made 0600, never open for a moment
            try:
                listener.bind(str(path))
            finally:
                os.umask(old)
            listener.listen(16)
            self.log(f"serving at {path} (pid {os.getpid()})")
            try:
                with capture.installed():
                    self._accept(listener)
            finally:
                listener.close()
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _accept(self, listener: socket.socket) -> None:
        while not self.stopping.is_set():
            ready, _, _ = select.select([listener], [], [], 0.2)
            if ready:
                conn, _ = listener.accept()
                self._busy(+1)
                threading.Thread(target=self._connection, args=(conn,), daemon=True).start()
            elif self.active == 0 and time.monotonic() - self.last_activity > self.idle_timeout:
                self.log(f"idle for {self.idle_timeout:g} s: stopping")
                return
        self.log("stopping")

    def _busy(self, change: int) -> None:
        with self._count:
            self.active += change
            self.last_activity = time.monotonic()

    def _connection(self, conn: socket.socket) -> None:
        try:
            with conn:
                if protocol.peer_uid(conn) != os.getuid():
                    self.log(f"refused a connection from uid {protocol.peer_uid(conn)}")
                    _reply_error(conn, "refused", "this server serves only its own user")
                    return
                while True:
                    try:
                        message = protocol.receive(conn)
                    except EOFError:
                        return
                    except protocol.ProtocolError as err:
                        _reply_error(conn, "protocol", str(err))  # cannot resync: close
                        _drain(conn)
                        return
                    self._answer(conn, message)
        except OSError:
            pass  # the client went away
        finally:
            self._busy(-1)

    def _answer(self, conn: socket.socket, message: dict[str, Any]) -> None:
        op = message.get("op")
        if message.get("version") != protocol.VERSION:
            _reply_error(conn, "protocol", f"protocol version {message.get('version')!r} is "
                         f"not this server's ({protocol.VERSION})")
        elif op == "status":
            protocol.send(conn, {"type": "status", "value": self.status()})
        elif op == "stop":
            protocol.send(conn, {"type": "stopping", "pid": os.getpid()})
            self.stopping.set()
        elif op == "compute":
            try:
                self._compute(conn, message)
            except codec.CodecError as err:
                _reply_error(conn, "protocol", str(err))
        else:
            _reply_error(conn, "protocol", f"unknown op {op!r}")

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "started": self.started, "idle_timeout": self.idle_timeout,
                "max_bytes": self.pool.max_bytes, "version": __version__,
                "models": [{"model": entry.name or entry.key[0], "settings": list(entry.key[1:]),
                            "bytes": entry.bytes, "last_used": entry.last_used,
                            "requests": entry.requests, "busy": entry.lock.locked()}
                           for entry in self.pool.entries()]}

    def _compute(self, conn: socket.socket, message: dict[str, Any]) -> None:
        command, spec = message.get("command"), message.get("model")
        inputs = codec.decode(message.get("inputs"))
        if command not in COMMANDS or not isinstance(spec, dict) or not isinstance(inputs, list):
            raise codec.CodecError("a compute request names a command, a model and inputs")
        theirs, ours = message.get("environment"), environment()
        if theirs != ours:
            differ = [name for name in ours if not isinstance(theirs, dict)
                      or theirs.get(name) != ours[name]]
            _reply_error(conn, "unusable", f"it runs with another {', '.join(differ)} (stop it "
                         "with: lazarus serve --stop)")
            return
        if isinstance(message.get("keep_alive"), int | float) and message["keep_alive"] > 0:
            self.idle_timeout = float(message["keep_alive"])
        # What the weights depend on: not use_cache (the activation cache's, set per request),
        # so that --no-cache runs and ordinary ones share one warm model.
        key = tuple(spec.get(name) for name in ("source", "device", "dtype", "trust_remote_code",
                                                 "device_map"))
        self.log(f"{command} on {spec.get('model_id')}")
        cancelled = threading.Event()
        watcher = threading.Thread(target=_watch, args=(conn, cancelled), daemon=True)
        watcher.start()
        entry = self.pool.entry(key)
        began = time.perf_counter()
        try:
            reply = Request(partial(protocol.send, conn), entry, self.pool, self.log,
                            cancelled).run(spec, command, inputs)
        except Cancelled:
            self.log(f"{command}: the client went away; stopped")
            return
        finally:
            cancelled.set()  # ends the watcher
            watcher.join()
        for dropped in self.pool.evict(keep=entry):
            self.log(f"evicted {dropped.name or dropped.key[0]} (memory cap)")
        protocol.send(conn, reply)
        self.log(f"{command}: answered in {time.perf_counter() - began:.3f} s")


def _watch(conn: socket.socket, cancelled: threading.Event) -> None:
    """Set `cancelled` when the client closes its end while its request runs (it sends
    nothing meanwhile, so a readable socket means it went away)."""
    while not cancelled.is_set():
        try:
            ready, _, _ = select.select([conn], [], [], 0.1)
            if ready and not conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                cancelled.set()
            elif ready:  # bytes it should not have sent: read at the next request
                time.sleep(0.1)
        except (BlockingIOError, InterruptedError):
            continue
        except (OSError, ValueError):
            cancelled.set()


def _drain(conn: socket.socket) -> None:
    """Read what the client still sends (a little, for a moment) before closing: a socket
    closed with unread bytes resets the connection, and the client could lose the reply."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1.0)
        for _ in range(64):
            if not conn.recv(1 << 16):
                return


def _reply_error(conn: socket.socket, kind: str, message: str) -> None:
    with contextlib.suppress(OSError):
        protocol.send(conn, {"type": "error", "kind": kind, "message": message})
