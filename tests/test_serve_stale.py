"""The socket a killed server leaves behind: `serve --status` and `--stop` take it for no server
(exit 3 and 0, as with none) and say once on stderr that they removed it; a command whose server
went away mid-request removes it too; and one rule (`protocol.remove_if_stale`) never removes
the socket of a server that runs or is starting."""

from __future__ import annotations

import fcntl
import os
import socket
import threading

import pytest
from test_serve import run_main, serve_dir, start, stop  # noqa: F401 (serve_dir: a fixture)

from lazarus.analyses.options import NeuronsOptions
from lazarus.serve import protocol
from lazarus.serve.client import ServerUnavailable, compute


def bound() -> socket.socket:
    """A private listening socket at the server's path, as `Server.run` makes it."""
    protocol.make_private_dir(protocol.serve_dir())
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(str(protocol.socket_path()))
    finally:
        os.umask(old)
    listener.listen(1)
    return listener


def leave_stale_socket() -> None:
    """What `kill -9` leaves: the socket file, no one listening, the lock free."""
    bound().close()
    assert protocol.socket_path().exists()


@pytest.mark.parametrize(("op", "code"), [("--status", 3), ("--stop", 0)])
def test_a_stale_socket_is_no_server_said_once(capsys, serve_dir, op, code):  # noqa: F811
    leave_stale_socket()
    none = f"no keep-alive server is running (folder {serve_dir})\n"
    assert run_main(capsys, "serve", op) == (
        code, none, f"lazarus: removed the stale socket {protocol.socket_path()} (its server "
                    "is gone)\n")
    assert not protocol.socket_path().exists()
    assert run_main(capsys, "serve", op) == (code, none, "")


def test_the_socket_of_a_running_or_starting_server_is_never_removed(serve_dir):  # noqa: F811
    server, thread, _ = start()
    try:
        assert protocol.remove_if_stale() is False  # it answers, and holds the lock
        assert protocol.socket_path().exists()
    finally:
        stop(server, thread)
    leave_stale_socket()
    with open(serve_dir / "server.lock", "a") as lock:  # a server starting holds it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert protocol.remove_if_stale() is False
        assert protocol.socket_path().exists()
    protocol.socket_path().unlink()
    with bound():  # someone listens there, though no one holds the lock
        assert protocol.remove_if_stale() is False
        assert protocol.socket_path().exists()
    assert protocol.remove_if_stale() is True  # closed now: left behind, stale
    assert not protocol.socket_path().exists()


def test_a_server_gone_mid_request_has_its_stale_socket_removed(serve_dir,  # noqa: F811
                                                                 llama_dir):
    listener = bound()

    def die_mid_request() -> None:  # as a server killed: socket file left, nothing listens
        conn, _ = listener.accept()
        protocol.receive(conn)
        listener.close()
        conn.close()

    thread = threading.Thread(target=die_mid_request, daemon=True)
    thread.start()
    spec = {"model_id": str(llama_dir), "source": str(llama_dir), "device": "auto",
            "dtype": "auto", "trust_remote_code": False, "device_map": None, "use_cache": False}
    with pytest.raises(ServerUnavailable) as caught:
        compute(spec, "neurons", [["ab"], NeuronsOptions(layers=0)], keep_alive=None,
                progress=None, notify=print, warn=print)
    thread.join(timeout=30)
    assert str(caught.value) == "the server went away mid-request (removed its stale socket)"
    assert not protocol.socket_path().exists()
