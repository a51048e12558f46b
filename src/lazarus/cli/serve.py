"""What `lazarus serve` does: run the keep-alive server in the foreground (its log on stderr),
or show how the running one is (--status), or stop it (--stop)."""

from __future__ import annotations

import argparse
import os
import time

from lazarus.cli.options import parse_size
from lazarus.cli.output import EXIT_NOTHING_FOUND, note, out
from lazarus.errors import LazarusError
from lazarus.serve.client import NoServer, ServerUnavailable, request, server_present
from lazarus.serve.protocol import NotPrivate, serve_dir, socket_path
from lazarus.serve.server import Server
from lazarus.text import plural

IDLE_TIMEOUT = 15 * 60.0  # seconds


def run_serve(args: argparse.Namespace) -> int:
    if args.status or args.stop:
        return _ask("status" if args.status else "stop")
    idle = IDLE_TIMEOUT if args.idle_timeout is None else args.idle_timeout
    if idle <= 0:
        raise LazarusError("--idle-timeout must be more than 0 (e.g. 15m)")
    cap = args.max_memory if args.max_memory is not None else _default_cap()
    try:
        Server(idle, cap, log=note).run()
    except NotPrivate as err:
        raise LazarusError(f"{err} (fix it with chmod 700, or remove it)") from None
    except OSError as err:
        raise LazarusError(f"cannot serve in {serve_dir()}: {err.strerror or err} (give a "
                           "folder whose parent exists, with a short path, in "
                           "LAZARUS_SERVE_DIR)") from None
    return 0


def _default_cap() -> int | None:
    """$LAZARUS_SERVE_MAX_MEMORY, else half the machine's memory."""
    value = os.environ.get("LAZARUS_SERVE_MAX_MEMORY")
    if value:
        try:
            return parse_size(value)
        except ValueError:
            raise LazarusError(f"LAZARUS_SERVE_MAX_MEMORY={value!r} is not a size (e.g. "
                               "8G or 500M)") from None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError):
        return None


def _ask(op: str) -> int:
    try:
        reply = request(op) if server_present() else None
    except NoServer as err:  # e.g. the socket of a server killed: removed, said once
        if err.removed:
            note(f"removed the stale socket {socket_path()} (its server is gone)")
        reply = None
    except ServerUnavailable as err:
        raise LazarusError(f"keep-alive server: {err}") from None
    if reply is None:
        out(f"no keep-alive server is running (folder {serve_dir()})")
        return 0 if op == "stop" else EXIT_NOTHING_FOUND
    if reply.get("type") == "stopping":
        out(f"stopped the keep-alive server (pid {reply.get('pid')})")
        return 0
    if reply.get("type") != "status":
        raise LazarusError(f"keep-alive server: {reply.get('message', 'a bad reply')}")
    out(render_status(reply["value"]))
    return 0


def render_status(status: dict) -> str:
    now = time.time()
    cap = status["max_bytes"]
    lines = [f"keep-alive server: pid {status['pid']}, up {now - status['started']:.0f} s, "
             f"idle timeout {status['idle_timeout']:g} s, memory cap "
             f"{'none' if cap is None else _mb(cap)}",
             f"{plural(len(status['models']), 'model')} loaded"
             + ("" if not status["models"] else ":")]
    for model in status["models"]:
        device, dtype = model["settings"][0], model["settings"][1]
        # a model whose every answer came from the activation cache has read no weights
        weights = _mb(model["bytes"]) if model["bytes"] else "no weights read yet"
        lines.append(f"  {model['model']} ({device}, {dtype}): {weights}, "
                     f"{plural(model['requests'], 'request')}, last used "
                     f"{now - model['last_used']:.0f} s ago"
                     + (", computing" if model["busy"] else ""))
    return "\n".join(lines)


def _mb(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB"
