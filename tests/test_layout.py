"""The package's layout holds: each room imports only the rooms below it, no import cycle, only the app
room imports Streamlit, and few modules sit flat at the top (issue #13)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kn_core"
RANK = {"errors": 0, "defaults": 0, "types": 0, "home": 0, "data": 1, "model": 2, "attribution": 3, "method": 4,
        "runs": 5, "app": 6, "commands": 7, "experiments": 7, "demo": 7, "cli": 7, "__main__": 7, "__init__": 7}
FLAT_LIMIT = 7  # errors, defaults, types, home, cli, __init__, __main__


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[str]:
    """Every module ``path`` imports, at module level or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def internal(target: str) -> str | None:
    """The kn_core module ``target`` names (a submodule, or the module holding an imported name)."""
    while target.startswith("kn_core"):
        if target in MODULES:
            return target
        target = target.rpartition(".")[0]
    return None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_room_imports_only_rooms_below_it(module):
    here = room(module)
    for target in imports(MODULES[module]):
        other = internal(target)
        if other is None or other == "kn_core":
            continue
        assert RANK[room(other)] <= RANK[here], f"{module} ({here}) imports {other} ({room(other)})"


def test_only_the_app_room_imports_streamlit():
    users = {m for m, p in MODULES.items() if any(t == "streamlit" or t.startswith("streamlit.") for t in imports(p))}
    assert users and all(room(m) == "app" for m in users), sorted(users)


def test_no_import_cycle_at_module_level():
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = set()
        for node in tree.body:  # module level only: imports inside functions are deliberate and lazy
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from package import submodule` imports the submodule, not a cycle
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in MODULES else internal(node.module))
            elif isinstance(node, ast.Import):
                targets |= {internal(a.name) for a in node.names}
        graph[module] = {t for t in targets if t and t != module and t != "kn_core"}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_few_modules_sit_flat_at_the_top():
    flat = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(flat) <= FLAT_LIMIT, flat
    assert all(stem in RANK for stem in flat), flat


def test_the_front_door_works():
    import kn_core

    assert kn_core.__version__ and callable(kn_core.locate) and callable(kn_core.load_model)
    with pytest.raises(AttributeError):
        kn_core.no_such_name  # noqa: B018


def test_building_the_cli_parser_imports_no_heavy_optional_packages():
    """Every command pays for what ``build_parser`` imports: the experiments' and queries' pandas and
    matplotlib, and the reference engine's captum, load only when a command uses them."""
    import subprocess
    import sys

    code = ("import sys, kn_core.cli; kn_core.cli.build_parser(); "
            "print(sorted(m for m in ('pandas', 'matplotlib', 'captum', 'streamlit', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_test_files_have_unique_basenames():
    """pytest imports test files by basename (no packages under tests/): two files of one name in different
    folders stop the whole run at collection (the CI failure of stop 29)."""
    names: dict[str, list[str]] = {}
    for path in sorted(Path(__file__).resolve().parent.rglob("test_*.py")):
        names.setdefault(path.name, []).append(str(path.relative_to(PACKAGE.parent)))
    assert not {name: paths for name, paths in names.items() if len(paths) > 1}
