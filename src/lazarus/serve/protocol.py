"""The wire between the CLI and the server: where the socket lives (a directory only its user
can enter), the checks made before trusting either end, and the frames (a 4-byte big-endian
length, then that many bytes of UTF-8 JSON)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

import lazarus

VERSION = 1  # of the frames' contents; a server of another version is not used
MAX_FRAME = 1 << 30  # a result of every neuron of a big layer fits; more is an error
HEADER = struct.Struct(">I")
# Environment that changes what a computation reads or writes: a server is used only by
# commands run with the same (else they run in process).
ENVIRONMENT = ("LAZARUS_CACHE_DIR", "XDG_CACHE_HOME", "HOME", "HF_HOME", "HF_HUB_CACHE",
               "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "OMP_NUM_THREADS",
               "TRANSFORMERS_VERBOSITY")  # "detail": transformers' log lines read otherwise


class ProtocolError(Exception):
    """The other end sent something that is not a frame, or went away mid-frame."""


class NotPrivate(Exception):
    """The server's folder or socket is not this user's alone."""


def environment() -> dict[str, Any]:
    """What a client and its server must agree on: lazarus's install and `ENVIRONMENT`."""
    return {"version": lazarus.__version__, "install": os.path.dirname(lazarus.__file__),
            **{name: os.environ.get(name) for name in ENVIRONMENT}}


def serve_dir() -> Path:
    """The per-user folder of the socket: $LAZARUS_SERVE_DIR, else $XDG_RUNTIME_DIR/lazarus,
    else /tmp/lazarus-UID."""
    if os.environ.get("LAZARUS_SERVE_DIR"):
        return Path(os.environ["LAZARUS_SERVE_DIR"])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "lazarus"
    return Path(f"/tmp/lazarus-{os.getuid()}")


def socket_path() -> Path:
    return serve_dir() / "server.sock"


def remove_if_stale() -> bool:
    """Remove the socket if it is stale (a server killed left it), so that it is reported once;
    whether it was. The one rule, for every caller: stale when no server holds the lock file
    (a server holds it from before it binds until it is gone, so one starting is left alone)
    and connecting to the socket is refused (no one listens)."""
    path = socket_path()
    try:
        with open(serve_dir() / "server.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(path))
                except ConnectionRefusedError:
                    path.unlink(missing_ok=True)
                    return True
            return False  # someone listens
    except OSError:  # the lock held (BlockingIOError): a server is starting or running; or
        return False  # no socket there (FileNotFoundError), or no folder


def make_private_dir(folder: Path) -> None:
    """Create `folder` 0700 (its parent must exist), or check the one there."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    problem = privacy_problem(folder, directory=True)
    if problem is not None:
        raise NotPrivate(problem)


def privacy_problem(path: Path, directory: bool) -> str | None:
    """Why `path` is not this user's private folder (0700) or socket (0600); None when it is.
    Read without following a symbolic link, which someone else could point elsewhere."""
    try:
        info = os.lstat(path)
    except OSError as err:
        return f"{path}: {err.strerror}"
    kind_ok = stat.S_ISDIR(info.st_mode) if directory else stat.S_ISSOCK(info.st_mode)
    if not kind_ok:
        return f"{path} is not a {'folder' if directory else 'socket'}"
    if info.st_uid != os.getuid():
        return f"{path} belongs to uid {info.st_uid}, not to you (uid {os.getuid()})"
    if stat.S_IMODE(info.st_mode) & 0o077:
        return (f"{path} has mode {stat.S_IMODE(info.st_mode):04o}, open to others (it must be "
                f"{'0700' if directory else '0600'})")
    return None


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def send(conn: socket.socket, message: dict[str, Any]) -> None:
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"a frame of {len(body)} bytes is over the limit of {MAX_FRAME}")
    conn.sendall(HEADER.pack(len(body)) + body)


def receive(conn: socket.socket) -> dict[str, Any]:
    """The next frame, as a JSON object; `ProtocolError` for garbage or a connection closed
    mid-frame, `EOFError` for one closed between frames."""
    header = _exactly(conn, HEADER.size, between_frames=True)
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"a frame of {length} bytes is over the limit of {MAX_FRAME}")
    body = _exactly(conn, length, between_frames=False)
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ProtocolError(f"a frame that is not JSON ({err})") from None
    if not isinstance(message, dict):
        raise ProtocolError("a frame that is not a JSON object")
    return message


def _exactly(conn: socket.socket, count: int, between_frames: bool) -> bytes:
    chunks, left = [], count
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            if between_frames and left == count:
                raise EOFError
            raise ProtocolError("the connection closed in the middle of a frame")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
