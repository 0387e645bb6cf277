"""The conda environment files stay in step with pyproject.toml's dependencies.

Conda itself cannot run here; this test is what keeps envs/*.yaml honest.
"""

import re
import tomllib

import yaml


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_envs_match_pyproject(repo):
    deps = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {_name(d): d for d in deps}
    seen = set()
    for env_file in sorted((repo / "envs").glob("*.yaml")):
        env = yaml.safe_load(env_file.read_text())
        pip = [d for d in env["dependencies"] if isinstance(d, dict)]
        assert pip, f"{env_file.name}: no pip section"
        for requirement in pip[0]["pip"]:
            name = _name(requirement)
            assert name in declared, f"{env_file.name}: {name} is not a dependency in pyproject.toml"
            assert requirement == declared[name], f"{env_file.name}: '{requirement}' != pyproject '{declared[name]}'"
            seen.add(name)
    assert set(declared) == seen, f"in no environment: {sorted(set(declared) - seen)}"


def test_every_rule_names_an_existing_env(repo):
    for rules in (repo / "workflow" / "rules").glob("*.smk"):
        for env in re.findall(r'"\.\./\.\./envs/([\w-]+\.yaml)"', rules.read_text()):
            assert (repo / "envs" / env).exists(), f"{rules.name} names missing envs/{env}"
