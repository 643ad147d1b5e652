"""Where a profile's samples go: folded stacks and the layer each sample counts for.

The light half of `bench profile` (bench/profile.py runs the tools): `bench report` imports only this
to draw a profile run's tables and flame graphs, so the Locust image renders any report without the
harness's load-running modules.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from bench.manifest import REPO_ROOT
from bench.results import Profile

V8_HOOK = Path(__file__).with_name("v8_profile.js")  # its frames are left out of a Node profile

Stacks = Counter  # tuple of frames, root first -> samples

LAYERS = ("server", "framework", "ORM/driver", "HTTP client/SDK", "app", "other")

# Per language, (layer, pattern) in order: a frame takes the layer of the first pattern it matches
# (re.search). Frames no pattern matches belong to no layer and a sample passes through them to the
# next frame towards the root: the standard library, pydantic, the Go and V8 runtimes, and the
# libraries both sides of a connection use (h11, h2 and anyio serve uvicorn and hypercorn as well
# as httpcore; Node's net sockets carry the server's, pg's and fetch's bytes alike).
# Python and Node frames read "function (path)", the path from the package (openai/_client.py,
# node_modules/pg/lib/client.js), the repo (fastapi_app/async_app.py), the standard library
# (python3.11/json/decoder.py) or Node's own modules (node:_http_server); Go frames are pprof's
# function names (github.com/gin-gonic/gin.(*Context).Next, main.(*handlers).recommendation).
LAYER_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "python": (
        ("ORM/driver", r"\((django/db|sqlalchemy|psycopg|psycopg_pool|psycopg2|asyncpg)/"),
        ("server", r"\((gunicorn|uvicorn|uvloop|httptools|hypercorn)/|\(werkzeug/serving\.py"),
        ("framework", r"\((flask|django|fastapi|starlette|quart|werkzeug|asgiref)/"),
        ("HTTP client/SDK", r"\((openai|httpx2?|httpcore2?|jiter|requests|urllib3)/"),
        ("app", r"\((flask_app|django_app|fastapi_app)/"),
    ),
    "go": (
        ("ORM/driver", r"^github\.com/jackc/"),
        ("HTTP client/SDK", r"^github\.com/openai/openai-go|^net/http\.(\(\*)?(Transport|persistConn|"
                            r"persistConnWriter|Client|bodyEOFSignal|transportRequest|wantConn)\)?\.|"
                            r"^net/http\.(send|setRequestCancel)\b"),
        ("server", r"^net/http\.(\(\*)?(conn|Server|response|connReader|chunkWriter|ServeMux|serverHandler|"
                   r"checkConnErrorWriter|expectContinueReader)\)?\.|^net/http\.readRequest\b"),
        ("framework", r"^github\.com/gin-(gonic|contrib)/"),
        ("app", r"^main\."),
    ),
    "node": (
        ("ORM/driver", r"\(node_modules/(pg|pg-pool|pg-protocol|pg-types|pg-connection-string|pgpass|"
                       r"postgres-[a-z]+)/"),
        ("HTTP client/SDK", r"\((node_modules/(openai|undici|node-fetch|agentkeepalive)/|"
                            r"node:internal/deps/undici|node:_http_client|node:internal/fetch)"),
        # OutgoingMessage, IncomingMessage and the HTTP parser serve node:http's client too, which
        # the targets do not use (fetch is undici's own)
        ("server", r"\(node:_http_(server|outgoing|incoming|common)\)"),
        ("framework", r"\(node_modules/(express|router|body-parser|finalhandler|send|serve-static|"
                      r"path-to-regexp|on-finished|content-type|type-is|accepts|qs)/"),
        ("app", r"\(node_app/"),
    ),
}

PPROF_RATE_HZ = 100  # Go's CPU profiler samples at 100 Hz (net/http/pprof sets no other rate)
# --- classification ---------------------------------------------------------------------------

@functools.cache
def _rules(language: str) -> tuple[tuple[str, re.Pattern], ...]:
    return tuple((layer, re.compile(pattern)) for layer, pattern in LAYER_RULES[language])


@functools.cache
def frame_layer(language: str, frame: str) -> str | None:
    """The layer a frame belongs to, or None (it passes a sample on towards the root)."""
    return next((layer for layer, pattern in _rules(language) if pattern.search(frame)), None)


def sample_layer(language: str, stack: Iterable[str]) -> str:
    """The layer of the innermost frame (from the leaf) that belongs to one, else "other"."""
    return next((layer for frame in reversed(tuple(stack))
                 if (layer := frame_layer(language, frame)) is not None), "other")


def layer_samples(language: str, stacks: Mapping[tuple[str, ...], int]) -> dict[str, int]:
    """Samples per layer, every layer in LAYERS order (0 where none)."""
    counts = dict.fromkeys(LAYERS, 0)
    for stack, n in stacks.items():
        counts[sample_layer(language, stack)] += n
    return counts


# --- folding each tool's output -----------------------------------------------------------------

def source_path(path: str) -> str:
    """A frame's file as the rules read it: from its package, the repo, or the standard library."""
    path = path.removeprefix("file://")
    packages = (("/site-packages/", ""), ("/dist-packages/", ""), ("/node_modules/", "node_modules/"))
    for marker, keep in packages:
        if marker in path:
            return keep + path.rsplit(marker, 1)[1]
    root = f"{REPO_ROOT}/"
    if path.startswith(root):
        return path[len(root):]
    stdlib = re.search(r"/lib/(python3\.\d+/.*)", path)
    return stdlib.group(1) if stdlib else path


def _frame(name: str, path: str) -> str:
    """ "function (path)", with no ";" (the folded format's separator)."""
    text = f"{name or '(anonymous)'} ({source_path(path)})" if path else name or "(anonymous)"
    return text.replace(";", ",")


NO_PYTHON_FRAME = ("(no Python frame)",)  # a thread busy in C code that no Python frame called


def fold_speedscope(doc: Mapping) -> Stacks:
    """py-spy's speedscope file: every sampled profile (one per thread and process) folded together."""
    # --subprocesses roots each stack in a frame of its process ("process 123:<command line>", no
    # file): dropped, so a gunicorn tree's workers add up to one graph
    frames = [None if f["name"].startswith("process ") and not f.get("file")
              else _frame(f["name"], f.get("file") or "") for f in doc["shared"]["frames"]]
    stacks: Stacks = Counter()
    for profile in doc["profiles"]:
        if profile.get("type") != "sampled":
            continue
        for sample in profile["samples"]:  # frame indexes, root first
            stacks[tuple(frame for i in sample if (frame := frames[i]) is not None) or NO_PYTHON_FRAME] += 1
    return stacks


def fold_cpuprofile(doc: Mapping) -> Stacks:
    """A V8 .cpuprofile: each sample's node up to the root; (idle) samples are left out, as py-spy
    leaves out idle threads, and so are the hook's own (bench/v8_profile.js starting and stopping the
    profiler); (program) and (garbage collector) stay (V8's own work, "other")."""
    hook = f"({source_path(str(V8_HOOK))})"
    nodes = {n["id"]: n for n in doc["nodes"]}
    parent = {child: n["id"] for n in doc["nodes"] for child in n.get("children", ())}

    @functools.cache
    def stack(node_id: int) -> tuple[str, ...]:
        frames = []
        while node_id in nodes:
            call = nodes[node_id]["callFrame"]
            if call["functionName"] != "(root)":
                frames.append(_frame(call["functionName"], call.get("url") or ""))
            node_id = parent.get(node_id, -1)
        return tuple(reversed(frames))

    stacks: Stacks = Counter()
    for node_id in doc.get("samples", ()):
        found = stack(node_id)
        if found and found[-1] != "(idle)" and not any(frame.endswith(hook) for frame in found):
            stacks[found] += 1
    return stacks


_TRACE_VALUE = re.compile(r"^\s*(\d+(?:\.\d+)?)(ns|us|µs|ms|s)\s+(\S.*)$")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}


def fold_pprof_traces(text: str, rate_hz: float = PPROF_RATE_HZ) -> Stacks:
    """`go tool pprof -traces` of a CPU profile: blocks between dashed lines, the first line the CPU
    time and the leaf, the next ones its callers; time / (1 / rate) = samples."""
    stacks: Stacks = Counter()
    for block in re.split(r"^-+\+-+$", text, flags=re.M)[1:]:
        lines = [line for line in block.splitlines() if line.strip()]
        first = _TRACE_VALUE.match(lines[0]) if lines else None
        if not first:
            continue
        value, unit, leaf = first.groups()
        # pprof prints label lines ("key: value") before the stack of a labelled sample: skipped
        frames = [leaf.strip(), *(line.strip() for line in lines[1:] if not re.match(r"^\s*\S+:\s", line))]
        stacks[tuple(f.removesuffix(" (inline)").strip() for f in reversed(frames))] += round(
            float(value) * _UNIT_S[unit] * rate_hz)
    return +stacks


def write_folded(path: Path, stacks: Mapping[tuple[str, ...], int]) -> None:
    """One "frame;frame;frame count" line per stack (root first), most samples first."""
    lines = [f"{';'.join(stack)} {n}" for stack, n in sorted(stacks.items(), key=lambda kv: -kv[1])]
    path.write_text("\n".join(lines) + "\n")


def read_folded(path: Path) -> Stacks:
    stacks: Stacks = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack:
            stacks[tuple(stack.split(";"))] += int(n)
    return stacks


def layer_rows(profile: Profile) -> list[tuple[str, float, float | None, int]]:
    """(layer, share %, CPU ms per request, samples) in LAYERS order."""
    ms = profile.cpu_ms_per_request
    return [(layer, share, None if ms is None else ms * share / 100, profile.layer_samples.get(layer, 0))
            for layer, share in ((k, profile.layers.get(k, 0.0)) for k in LAYERS)]


def profiled_cpu_pct(profile: Profile) -> float | None:
    """The CPU the samples stand for, in % of one core (samples / rate / window)."""
    return 100 * profile.samples / profile.rate_hz / profile.window_s if profile.window_s else None
