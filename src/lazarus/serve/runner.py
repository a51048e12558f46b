"""One computation on the server, on a model of the pool: its warm handle (made, or made again
when its files changed), room made for its weights before they load, the analysis run with
what it says (notes, warnings, progress, upstream's stderr and Python warnings, see `capture`)
going to its client as it happens, and the reply.

A run in process loads the model at every command, so whatever loading says is said every
time; a warm model is not loaded again, so what its load said is kept and said again at each
request's first use of the weights. The server loads every block; a command that in process
loads only its first blocks from a checkpoint that cannot be read in part says so ("loading the
whole model (...)"), and the server says it for it. What only a whole model's load says (e.g.
of its generation_config.json) is said for such a command too: the server has only that load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from lazarus.api import Model
from lazarus.engine.cache import model_identity
from lazarus.engine.loading import partial_load_obstacle
from lazarus.errors import LazarusError, PromptError
from lazarus.serve import capture, codec
from lazarus.serve.commands import analysis_of
from lazarus.serve.pool import Entry, Pool

SAID = ("note", "warn", "stderr", "warning")  # what a request says, kept from a load


class Cancelled(BaseException):
    """The client went away: stop computing (a BaseException, so no `except Exception` in an
    analysis takes it for a failure of its own)."""


class Request:
    def __init__(self, send: Callable[[dict[str, Any]], None], entry: Entry, pool: Pool,
                 log: Callable[[str], None], cancelled: threading.Event) -> None:
        self.send, self.entry, self.pool, self.log = send, entry, pool, log
        self.cancelled = cancelled
        self.recording: list[tuple[str, list[Any]]] | None = None  # while the model loads
        self.used = False  # the weights, by this request

    def say(self, kind: str, *args: Any) -> None:
        """Send a note, warning, progress step, stderr text or Python warning; a client gone
        stops the computation (Cancelled), except from inside a write to stderr or a warning,
        whose callers (logging) would report the exception: there it is noted for the next."""
        if self.recording is not None and kind in SAID:
            self.recording.append((kind, list(args)))
        quiet = kind in ("stderr", "warning")
        if self.cancelled.is_set():
            if quiet:
                return
            raise Cancelled
        try:
            self.send({"type": kind, "args": codec.encode(list(args))})
        except OSError:
            self.cancelled.set()
            if not quiet:
                raise Cancelled from None

    def saying(self, kind: str) -> Callable[..., None]:
        return lambda *args: self.say(kind, *args)

    def run(self, spec: dict[str, Any], command: str, inputs: list[Any]) -> dict[str, Any]:
        entry = self.entry
        with entry.lock:  # one computation per model; the others wait here
            if self.cancelled.is_set():
                raise Cancelled
            try:
                with capture.routed(self.say):
                    analysis, takes_progress = analysis_of(command)  # imported here, as in process
                    handle = self._handle(spec)
                    extra = [self.saying("progress")] if takes_progress else []
                    value = analysis(handle, *inputs, *extra)
                reply = {"type": "result", "value": codec.encode(value)}
            except PromptError as err:
                reply = {"type": "error", "kind": "prompt", "prompt": err.prompt,
                         "problem": err.problem}
            except LazarusError as err:
                reply = {"type": "error", "kind": "lazarus", "message": str(err)}
            except Exception as err:  # a bug: the client runs in process and shows it
                self.log(traceback.format_exc().rstrip())
                reply = {"type": "error", "kind": "internal",
                         "message": f"{type(err).__name__}: {err}"}
            finally:
                if entry.handle is not None:
                    entry.handle.loading = entry.handle.using = None
                if entry.handle is None:
                    self.pool.drop(entry)
                else:
                    entry.requests += 1
                    self.pool.measure(entry)
            if self.cancelled.is_set():
                raise Cancelled
            return reply

    def _handle(self, spec: dict[str, Any]) -> Any:
        """The entry's warm handle, set up to speak to this request."""
        entry = self.entry
        if entry.handle is not None and model_identity(entry.handle.info) != entry.identity:
            self.log(f"{spec['model_id']}: its files changed; loading it again")
            entry.handle, entry.bytes, entry.load_said = None, 0, []
        if entry.handle is None:
            entry.handle = _open(spec, self.saying("note"), self.saying("warn"))
            entry.identity = model_identity(entry.handle.info)
        handle = entry.handle
        handle.notify, handle.warn = self.saying("note"), self.saying("warn")
        # The model is shared by requests with and without --no-cache: each its own.
        handle.settings = dataclasses.replace(handle.settings, use_cache=bool(spec["use_cache"]))
        # Named as this command gave it (a relative folder, say), as in process.
        handle.info = dataclasses.replace(handle.info, model_id=spec["model_id"])
        entry.name = spec["model_id"]
        handle.loading, handle.using = self._loading, self._using
        return handle

    @contextlib.contextmanager
    def _loading(self, needed: int) -> Iterator[None]:
        """Around a load: room made first, and what it says kept for the later requests."""
        self._make_room(needed)
        self.recording = []
        try:
            yield
            self.entry.load_said = self.recording
        finally:
            self.recording = None

    def _using(self, up_to_layer: int | None) -> None:
        """This request's first use of the weights (of blocks 0..up_to_layer; None: whole):
        where a run in process loads them, say what it would have said."""
        if self.used:
            return
        self.used = True
        handle = self.entry.handle
        if up_to_layer is not None:
            obstacle = partial_load_obstacle(handle.info, handle.settings.trust_remote_code)
            if obstacle is not None:
                self.say("note", f"loading the whole model ({obstacle})")
        if handle.loads:  # warm: the load that a run in process does is not done again
            for kind, args in self.entry.load_said:
                self.say(kind, *args)

    def _make_room(self, needed: int) -> None:
        """Before the model loads (`needed`: its weights' bytes, as its files tell): the least
        recently used idle models go first, so that the new one fits under the cap. One alone
        over the cap is loaded all the same, said in the log only: the command's output stays
        that of a run in process, where there is no cap."""
        entry = self.entry
        for dropped in self.pool.make_room(entry, needed):
            self.log(f"evicted {dropped.name or dropped.key[0]} to make room for {entry.name} "
                     "(memory cap)")
        cap = self.pool.max_bytes
        if cap is not None and needed > cap:
            self.log(f"{entry.name} needs about {_mib(needed)}, more than the memory cap "
                     f"({_mib(cap)}): loading it all the same")
        elif cap is not None and self.pool.total_bytes() > cap:
            self.log(f"loading {entry.name} passes the memory cap ({_mib(cap)}) until the "
                     "models computing now are done")


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB"


def _open(spec: dict[str, Any], notify: Callable[[str], None],
          warn: Callable[[str], None]) -> Any:
    """A warm handle: every block loaded at first use, so any later layer is free."""
    return Model(spec["source"], device=spec["device"], dtype=spec["dtype"],
                 trust_remote_code=spec["trust_remote_code"], device_map=spec["device_map"],
                 use_cache=spec["use_cache"], whole=True, notify=notify, warn=warn)
