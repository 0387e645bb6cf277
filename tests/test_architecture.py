"""The package's layering (DESIGN.md): rules -> scripts -> stages/plots -> physics, one way.

- every ``workflow/rules/NAME.smk`` runs scripts that import only ``clustersbi.stages.NAME``,
  ``clustersbi.plots.NAME`` and the common logging preamble ``clustersbi.logs``;
- stages never import matplotlib or plots; plots never import stages;
- physics and learning modules import neither stages nor plots;
- no script name shadows a package module with other content.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "workflow" / "rules"
SCRIPTS = ROOT / "workflow" / "scripts"
PACKAGE = ROOT / "src" / "clustersbi"
#: rules files that hold only shared input functions
NO_STAGE = {"common"}


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by a Python file (relative imports resolved in the package)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    rel_parts = path.relative_to(PACKAGE.parent).with_suffix("").parts if PACKAGE in path.parents else None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level and rel_parts is not None:
                base = list(rel_parts[: len(rel_parts) - node.level])
                if path.name == "__init__.py":
                    base = list(rel_parts[: len(rel_parts) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _rule_scripts(rules_file: Path) -> list[Path]:
    return [SCRIPTS / name for name in re.findall(r'"\.\./scripts/([\w]+\.py)"', rules_file.read_text())]


@pytest.mark.parametrize("rules_file", sorted(RULES.glob("*.smk")), ids=lambda p: p.stem)
def test_rule_scripts_import_only_their_stage_and_plot_modules(rules_file):
    stage = rules_file.stem
    scripts = _rule_scripts(rules_file)
    if stage in NO_STAGE:
        assert not scripts, f"{rules_file.name} should hold no rules"
        return
    assert scripts, f"{rules_file.name} runs no scripts"
    allowed = {f"clustersbi.stages.{stage}", f"clustersbi.plots.{stage}", "clustersbi.logs"}
    for script in scripts:
        assert script.exists(), f"{rules_file.name} names a missing script {script.name}"
        used = {m for m in _imports(script) if m.startswith("clustersbi")}
        # a module, or a name imported from one: "clustersbi.stages.xod" or "clustersbi.stages.xod.xod_chunk"
        bad = {m for m in used if m not in allowed and m.rsplit(".", 1)[0] not in allowed}
        assert not bad, f"{script.name} (rules {rules_file.name}) imports {sorted(bad)}; allowed: {sorted(allowed)}"


@pytest.mark.parametrize("rules_file", sorted(set(RULES.glob("*.smk")) - {RULES / "common.smk"}), ids=lambda p: p.stem)
def test_each_rules_file_has_its_stage_module(rules_file):
    stage = rules_file.stem
    assert (PACKAGE / "stages" / f"{stage}.py").exists(), f"no clustersbi/stages/{stage}.py for {rules_file.name}"


def test_every_script_belongs_to_a_rule():
    named = {p.name for rules in RULES.glob("*.smk") for p in _rule_scripts(rules)}
    orphans = sorted(p.name for p in SCRIPTS.glob("*.py") if p.name not in named)
    assert not orphans, f"scripts no rule runs: {orphans}"


def test_script_names_do_not_shadow_package_modules():
    modules = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    clash = sorted(p.stem for p in SCRIPTS.glob("*.py") if p.stem in modules)
    assert not clash, f"scripts named like package modules: {clash}"


def _package_files(sub: str | None = None) -> list[Path]:
    base = PACKAGE / sub if sub else PACKAGE
    return sorted(base.rglob("*.py"))


@pytest.mark.parametrize("path", _package_files("stages"), ids=lambda p: p.name)
def test_stages_import_no_plots_and_no_matplotlib(path):
    bad = sorted(m for m in _imports(path) if m.startswith(("matplotlib", "clustersbi.plots")))
    assert not bad, f"stage module {path.name} imports {bad}"


@pytest.mark.parametrize("path", _package_files("plots"), ids=lambda p: p.name)
def test_plots_import_no_stages(path):
    bad = sorted(m for m in _imports(path) if m.startswith("clustersbi.stages"))
    assert not bad, f"plot module {path.name} imports {bad}"


@pytest.mark.parametrize(
    "path",
    [p for p in _package_files() if p.parent.name not in ("stages", "plots")],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_physics_imports_neither_stages_nor_plots(path):
    bad = sorted(m for m in _imports(path) if m.startswith(("clustersbi.stages", "clustersbi.plots", "matplotlib")))
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_import_scanner_sees_relative_imports():
    """The checks above would pass vacuously if relative imports were missed."""
    names = _imports(PACKAGE / "stages" / "xod.py")
    assert "clustersbi.xod" in names and "clustersbi.io" in names, sorted(names)
