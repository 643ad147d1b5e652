"""Per-framework `targets.toml` manifests: the single source of truth for every target.

Each `<framework>_app/targets.toml` holds an array of tables:

    [[targets]]
    name = "flask-sync"                # public target name
    framework = "flask"
    model = "gunicorn sync: {workers} processes x 1 thread"   # words; placeholders allowed
    port = 8001                        # default port (compose, `bench up`)
    command = ["gunicorn", "...", "--bind", "{host}:{port}", "--workers", "{workers}", "..."]
    params = { workers = 4, pool_size = 1 }   # defaults for placeholders; overridable per run
    env = { DB_POOL_SIZE = "{pool_size}" }
    capacity = "workers"               # max requests in flight the model allows; omit = unbounded
    processes = "workers + 1"          # processes in the tree (master + workers)
    db_pool = "workers * pool_size"    # total DB connections
    anti_pattern = false               # true for targets kept on purpose to show a mistake
    build = ["go", "build", "..."]     # optional: run once before the target starts
    graceful_s = 5                     # how long in-flight requests may finish after SIGTERM
    bare_of = "flask-sync"             # optional: a bare context variant of that target (below)
    jobs = true                        # serves POST /jobs/recommendation + GET /jobs/{id}
    job_capacity = "celery_workers"    # jobs run at once (background threads, Celery processes)
    scenarios = ["jobs"]               # what `bench compare` measures it in; omit = every scenario

A *bare* variant (`bare_of` set) is the framework's hello-world under the same server and model
settings as the target it names: only `GET /healthz` and `GET /readyz`, no DB, no upstream, no app
imports. It is context for memory claims (the framework's own cost vs the app's; bench/bare.py
measures it), never a benchmark target: `load_targets` and `select` leave bare variants out, so the
contract suite, compose, `bench compare` and claims never see them; `bare_targets` lists them.

`graceful_s` is the server's own graceful-shutdown limit (gunicorn's graceful_timeout, uvicorn's
--timeout-graceful-shutdown, the Go server's Shutdown deadline); commands may use it as
`{graceful_s}`, and `bench faults` checks a SIGTERM under load against it.

Job targets (`jobs = true`, docs/CONTRACT.md "Background jobs") answer the recommendation as a job;
`job_capacity` bounds the jobs in progress at once, as `capacity` bounds the requests in flight.
`scenarios` keeps a target out of the cells where it would only repeat another target's row (a
job target's synchronous `/recommendation` is the app it fixes, unchanged).

`capacity`, `processes`, `db_pool` and `job_capacity` are integers or arithmetic over `params`
(+ - * // min max).
Commands run from the repository root; `{host}`, `{port}` and every param are substituted.
docs/DESIGN.md (Targets and their manifests) explains the format and the fairness rules.

`--set NAME=V1[,V2...]` (bench compare, bench up) overrides params; `parse_sets` is its only parser.
"""

from __future__ import annotations

import ast
import operator
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FRAMEWORK_DIRS = ("flask_app", "django_app", "fastapi_app", "go_app", "node_app", "rails_app")

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv}
_FUNCS = {"min": min, "max": max}


class ManifestError(ValueError):
    """A targets.toml entry is malformed or refers to an unknown parameter."""


def evaluate(expr: int | str | None, params: dict[str, int]) -> int | None:
    """Evaluate a manifest formula such as "workers * threads" over integer params."""
    if expr is None or isinstance(expr, int):
        return expr

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in params:
                raise ManifestError(f"unknown parameter {node.id!r} in {expr!r}")
            return int(params[node.id])
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _FUNCS and not node.keywords):
            return _FUNCS[node.func.id](*(ev(a) for a in node.args))
        raise ManifestError(f"unsupported expression {expr!r}")

    return ev(ast.parse(expr, mode="eval"))


@dataclass(frozen=True)
class Target:
    name: str
    framework: str
    model: str
    port: int
    command: tuple[str, ...]
    params: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    capacity: int | str | None = None
    processes: int | str = 1
    db_pool: int | str = 1
    anti_pattern: bool = False
    build: tuple[str, ...] = ()
    bare_of: str | None = None
    graceful_s: int | None = None  # None: the server has no documented limit
    jobs: bool = False
    job_capacity: int | str | None = None
    scenarios: tuple[str, ...] = ()  # empty: measured in every scenario
    manifest: Path = REPO_ROOT

    def measured_in(self, scenario: str) -> bool:
        """Whether `bench compare` measures this target in `scenario` (its manifest's list)."""
        return not self.scenarios or scenario in self.scenarios

    @property
    def bare(self) -> bool:
        """A bare context variant (hello-world of the framework), not a benchmark target."""
        return self.bare_of is not None

    def resolve(self, overrides: dict[str, int] | None = None, *, host: str = "127.0.0.1",
                port: int | None = None) -> ResolvedTarget:
        """Bind params (defaults + per-run overrides), host and port into a runnable target."""
        unknown = set(overrides or {}) - set(self.params)
        if unknown:
            raise ManifestError(
                f"{self.name} has no parameter {', '.join(sorted(unknown))}; "
                f"it has: {', '.join(sorted(self.params)) or 'none'}")
        params = {**self.params, **(overrides or {})}
        subst = {**{k: str(v) for k, v in params.items()}, "host": host,
                 "port": str(port or self.port), "graceful_s": str(self.graceful_s)}
        try:
            argv = tuple(part.format(**subst) for part in self.command)
            env = {k: v.format(**subst) for k, v in self.env.items()}
            model = self.model.format(**subst)
        except KeyError as exc:
            raise ManifestError(f"{self.name}: unknown placeholder {exc}") from None
        return ResolvedTarget(
            target=self, params=params, host=host, port=port or self.port, argv=argv, env=env,
            model=model, capacity=evaluate(self.capacity, params),
            processes=evaluate(self.processes, params), db_pool=evaluate(self.db_pool, params),
            job_capacity=evaluate(self.job_capacity, params))


@dataclass(frozen=True)
class ResolvedTarget:
    target: Target
    params: dict[str, int]
    host: str
    port: int
    argv: tuple[str, ...]
    env: dict[str, str]
    model: str
    capacity: int | None
    processes: int
    db_pool: int
    job_capacity: int | None = None

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _load_file(path: Path) -> list[Target]:
    data = tomllib.loads(path.read_text())
    targets = []
    for raw in data.get("targets", []):
        raw = dict(raw)
        try:
            raw["command"] = tuple(raw["command"])
            raw["build"] = tuple(raw.get("build", ()))
            raw["scenarios"] = tuple(raw.get("scenarios", ()))
            targets.append(Target(manifest=path, **raw))
        except TypeError as exc:
            raise ManifestError(f"{path}: {exc}") from None
    return targets


@lru_cache
def _load_all(root: Path) -> dict[str, Target]:
    """Every entry of every manifest (bare variants included), checked, keyed by name."""
    found: dict[str, Target] = {}
    for folder in FRAMEWORK_DIRS:
        path = root / folder / "targets.toml"
        if not path.exists():
            continue
        for target in _load_file(path):
            if target.name in found:
                raise ManifestError(f"target {target.name!r} defined twice")
            found[target.name] = target
    for target in found.values():
        if target.bare_of is None:
            continue
        main = found.get(target.bare_of)
        if main is None or main.bare or main.framework != target.framework:
            raise ManifestError(f"{target.name}: bare_of = {target.bare_of!r} is not a "
                                f"{target.framework} target")
    return found


@lru_cache
def load_targets(root: Path = REPO_ROOT) -> dict[str, Target]:
    """All benchmark targets of all framework manifests, in FRAMEWORK_DIRS then file order, keyed by
    name. Bare context variants are left out (`bare_targets` has them)."""
    return {name: t for name, t in _load_all(root).items() if not t.bare}


@lru_cache
def bare_targets(root: Path = REPO_ROOT) -> dict[str, Target]:
    """The bare context variants (`bare_of` set), in manifest order, keyed by name."""
    return {name: t for name, t in _load_all(root).items() if t.bare}


def select(names: list[str] | None, root: Path = REPO_ROOT) -> list[Target]:
    """Targets by name (all when names is empty), with a clear error for an unknown name."""
    targets = load_targets(root)
    if not names:
        return list(targets.values())
    missing = [n for n in names if n not in targets]
    if missing:
        bare = [n for n in missing if n in bare_targets(root)]
        hint = (f" ({', '.join(bare)}: bare context variant(s), measured by bench/bare.py, "
                "not benchmark targets)") if bare else ""
        raise ManifestError(f"unknown target(s): {', '.join(missing)}; known: {', '.join(targets)}"
                            + hint)
    return [targets[n] for n in names]


def parse_sets(items: Iterable[str], targets: Sequence[Target]) -> dict[str, list[int]]:
    """`--set workers=4,8 --set pool_size=2` → {"workers": [4, 8], "pool_size": [2]}.

    Every value is a positive integer (params count workers, threads or connections); a name given
    twice is an error, and so is a param that any of `targets` lacks (the message names them).
    """
    sets: dict[str, list[int]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ManifestError(f"--set takes NAME=V1[,V2...], got {item!r}")
        if key in sets:
            raise ManifestError(f"--set {key} given twice")
        try:
            values = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            values = []
        if not values or any(v < 1 for v in values):
            raise ManifestError(f"--set {key} takes positive integers (e.g. {key}=4,8), got {text!r}")
        sets[key] = values
    for key in sets:
        lacking = [t for t in targets if key not in t.params]
        if lacking:
            has = "; ".join(f"{t.name} has {', '.join(sorted(t.params)) or 'none'}" for t in lacking)
            raise ManifestError(f"--set {key}: no such parameter in {', '.join(t.name for t in lacking)} "
                                f"({has})")
    return sets


def parse_overrides(items: Iterable[str], targets: Sequence[Target]) -> dict[str, int]:
    """`parse_sets` for commands that run one configuration: one value per parameter."""
    sets = parse_sets(items, targets)
    several = [f"{key}={','.join(map(str, values))}" for key, values in sets.items() if len(values) > 1]
    if several:
        raise ManifestError(f"--set takes one value per parameter here, got {' '.join(several)} "
                            "(`bench compare --set` sweeps several)")
    return {key: values[0] for key, values in sets.items()}
