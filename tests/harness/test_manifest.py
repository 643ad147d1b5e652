from __future__ import annotations

import re

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


# --- `--set`: one parser for bench compare (sweeps) and bench up (one value each) ----------------

def test_parse_sets_reads_sweeps_and_single_values():
    targets = [_target(params={"workers": 4, "pool_size": 1})]
    assert manifest.parse_sets(["workers=4,8, 16", " pool_size = 2"], targets) == {
        "workers": [4, 8, 16], "pool_size": [2]}
    assert manifest.parse_sets([], targets) == {}
    assert manifest.parse_overrides(["workers=8", "pool_size=2"], targets) == {"workers": 8, "pool_size": 2}


@pytest.mark.parametrize("item", ["workers", "=8", "workers=", "workers=eight", "workers=1.5",
                                  "workers=-1", "workers=0", "workers=4,-1"])
def test_parse_sets_rejects_anything_but_positive_integers(item):
    with pytest.raises(ManifestError, match="--set"):
        manifest.parse_sets([item], [_target()])


def test_parse_sets_rejects_a_name_given_twice():
    with pytest.raises(ManifestError, match="workers given twice"):
        manifest.parse_sets(["workers=4", "workers=8"], [_target()])


def test_unknown_param_names_it_and_every_target_that_lacks_it():
    targets = manifest.select(["flask-sync", "fastapi-async", "go-gin"])
    with pytest.raises(ManifestError) as caught:
        manifest.parse_sets(["workers=8"], targets)
    message = str(caught.value)
    assert message.startswith("--set workers: no such parameter in fastapi-async, go-gin")
    assert "fastapi-async has pool_size" in message and "flask-sync" not in message
    # bench up follows the same rule (it used to apply a param to whichever target had it)
    with pytest.raises(ManifestError, match="no such parameter in fastapi-async, go-gin"):
        manifest.parse_overrides(["workers=8"], targets)


def test_parse_overrides_takes_one_value_per_parameter():
    with pytest.raises(ManifestError, match="one value per parameter.*workers=4,8"):
        manifest.parse_overrides(["workers=4,8"], [_target()])


def test_both_commands_use_the_manifest_parser():
    from typer.testing import CliRunner

    from bench.cli import app
    runner = CliRunner()
    for argv in (["compare", "--targets", "flask-sync,fastapi-async", "--set", "workers=8"],
                 ["up", "flask-sync", "fastapi-async", "--set", "workers=8"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, result.output
        assert "no such parameter in fastapi-async" in unboxed(result.output)
    result = runner.invoke(app, ["up", "flask-sync", "--set", "workers=-1"])
    assert result.exit_code == 2 and "positive integers" in unboxed(result.output)


def unboxed(output: str) -> str:
    """typer's error panel without its frame and line breaks."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())
