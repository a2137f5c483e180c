"""The house rules of issue 9, checked on the source itself: no import circle (function-level imports
counted), no function over 60 lines, no file over 400, engine never imports tuning/Optuna/MLflow, and
tuning reaches the engine only through its public front."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "tuning")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _imported(module: str, path: Path, mods: dict | None = None) -> list[str]:
    """Every module named by an import statement anywhere in the file (function bodies included);
    ``from pkg import mod`` names the submodule (as ``import pkg.mod`` does), ``from mod import name`` the module."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            subs = [f"{base}.{a.name}" for a in node.names]
            names += [n for n in subs if mods is None or n in mods]
            if mods is None or any(n not in mods for n in subs):
                names.append(base)
    return names


def _resolve(name: str, mods: dict) -> str | None:
    while name and name not in mods:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name or None


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for mod, path in mods.items():
        targets = {_resolve(n, mods) for n in _imported(mod, path, mods)}
        graph[mod] = {t for t in targets if t and t != mod}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_between_files():
    assert _cycles(_graph()) == []


def test_engine_imports_neither_tuning_nor_optuna_nor_mlflow():
    mods = _modules()
    bad = [(m, n) for m, p in mods.items() if m.startswith("engine") for n in _imported(m, p)
           if n.split(".")[0] in ("tuning", "optuna", "mlflow")]
    assert bad == []


def _statements(path: Path) -> list[str]:
    """The module each import statement names, as written (``from engine import x`` -> "engine")."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out.append(node.module or "")
    return out


def test_tuning_reaches_the_engine_only_through_its_front():
    bad = sorted({(str(p.relative_to(ROOT)), name) for p in (ROOT / "tuning").rglob("*.py")
                  for name in _statements(p) if name.startswith("engine.")})
    assert bad == []


def test_no_function_over_60_lines_and_no_file_over_400():
    """Functions of the packages; files of the packages, the tests and the scripts (a test module that outgrew 400
    lines is split by what it tests)."""
    long_functions, long_files = [], []
    for path in sorted(p for top in (*PACKAGES, "tests", "scripts") for p in (ROOT / top).rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 400:
            long_files.append(str(path.relative_to(ROOT)))
        if path.relative_to(ROOT).parts[0] not in PACKAGES:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long_functions.append(f"{path.relative_to(ROOT)}::{node.name}")
    assert long_functions == [] and long_files == []


def test_the_engine_front_is_lazy_and_every_name_resolves():
    """``from engine import EngineError`` costs the error module alone (no pandas, scipy or world); every
    public name of the front resolves to its home module's object."""
    code = ("import sys\nfrom engine import EngineError, CodedParser, atomic_write\n"
            "heavy = sorted(m for m in ('pandas', 'scipy', 'numpy', 'pyarrow', 'engine.chain.runner') if m in sys.modules)\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""
    import importlib

    import engine
    for name in engine.__all__:
        home = importlib.import_module(engine._EXPORTS[name])
        assert getattr(engine, name) is getattr(home, name), name
    assert engine.chain.runner is importlib.import_module("engine.chain.runner")     # a submodule resolves too
    with pytest.raises(AttributeError):
        engine.no_such_name  # noqa: B018


def _package_map() -> dict[str, set[str]]:
    """docs/ARCHITECTURE.md's package map: ``<package>/  <module>, <module> | <what it is for>`` per line."""
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    block = doc.split("## Packages\n", 1)[1].split("```\n", 2)[1]
    out = {}
    for line in block.splitlines():
        head, _, _purpose = line.partition(" | ")
        package, _, modules = head.strip().partition(" ")
        assert package.endswith("/") and package not in out, line
        out[package.rstrip("/")] = {m.strip() for m in modules.split(",") if m.strip()}
    return out


def test_the_architecture_map_matches_the_tree():
    """Every package of engine/ and tuning/ has one line in the map, and a line names exactly its modules."""
    tree = {}
    for pkg in PACKAGES:
        for init in (ROOT / pkg).rglob("__init__.py"):
            folder = init.parent
            tree[folder.relative_to(ROOT).as_posix()] = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    assert _package_map() == tree


def test_the_docs_open_with_the_state_table_then_the_map():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    assert doc.index("## Start here: the state table") < doc.index("## Packages") < doc.index("## Chain API")


def test_each_error_code_number_names_one_error():
    """A coded line's number is its identity (scripts match on it): no two errors of a family share one."""
    import re
    from collections import defaultdict

    names = defaultdict(set)
    for path in _modules().values():
        for code in re.findall(r'"(E3A_[A-Z]+_\d{3}_[A-Z0-9_]+)"', path.read_text()):
            family, number = code.split("_")[1:3]
            names[(family, number)].add(code)
    assert len(names) > 40   # the scan sees the codes
    shared = {k: sorted(v) for k, v in names.items() if len(v) > 1}
    assert not shared, shared
