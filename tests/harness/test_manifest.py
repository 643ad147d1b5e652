from __future__ import annotations

import pytest

from bench import manifest
from bench.manifest import ManifestError, Target, evaluate


def test_evaluate_formulas():
    params = {"workers": 4, "threads": 8, "pool_size": 2}
    assert evaluate("workers * threads", params) == 32
    assert evaluate("workers + 1", params) == 5
    assert evaluate("min(workers * threads, 15)", params) == 15
    assert evaluate(7, params) == 7
    assert evaluate(None, params) is None


@pytest.mark.parametrize("expr", ["__import__('os')", "workers ** 2", "nope + 1", "1.5"])
def test_evaluate_rejects_anything_else(expr):
    with pytest.raises(ManifestError):
        evaluate(expr, {"workers": 4})


def _target(**kw) -> Target:
    base = dict(name="t", framework="f", model="{workers} workers", port=9,
                command=("srv", "--bind", "{host}:{port}", "-w", "{workers}"),
                params={"workers": 4}, env={"POOL": "{workers}"}, capacity="workers",
                processes="workers + 1", db_pool="workers")
    return Target(**{**base, **kw})


def test_resolve_substitutes_and_overrides():
    resolved = _target().resolve({"workers": 16}, port=1234)
    assert resolved.argv == ("srv", "--bind", "127.0.0.1:1234", "-w", "16")
    assert resolved.env == {"POOL": "16"}
    assert (resolved.capacity, resolved.processes, resolved.db_pool) == (16, 17, 16)
    assert resolved.model == "16 workers"


def test_resolve_rejects_unknown_override():
    with pytest.raises(ManifestError, match="no parameter threads"):
        _target().resolve({"threads": 2})


def test_every_manifest_target_resolves():
    targets = manifest.load_targets()
    assert {"flask-sync", "fastapi-async"} <= set(targets)
    for target in targets.values():
        resolved = target.resolve()
        assert resolved.argv and resolved.processes >= 1 and resolved.db_pool >= 1
        assert str(resolved.port) in " ".join(resolved.argv)


def test_select_unknown_target_names_the_known_ones():
    with pytest.raises(ManifestError, match="flask-sync"):
        manifest.select(["nope"])
