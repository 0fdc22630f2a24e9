"""The layer rule: the engine never imports Qt, so it runs headless (command line, batch jobs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Import every engine module, run a command, and fail if PySide6 (or any Qt binding) got imported.
PROBE = """
import importlib, pkgutil, sys
import engine
names = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
for name in names:
    importlib.import_module(name)
import main
rc = main.main(sys.argv[1:])
qt = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "PyQt5", "PyQt6", "shiboken6"))
print("MODULES", len(names))
print("QT", ",".join(qt) or "none")
sys.exit(rc)
"""


def _probe(*argv: str) -> str:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_engine_and_invert_command_never_import_qt(tmp_path):
    from factory.synthetic import write_photo

    photo = write_photo(tmp_path / "face.png", seed=3, size=256)
    out = _probe("invert", str(photo), "--model", "demo", "--out", str(tmp_path / "out"), "--no-identity")
    assert "QT none" in out, out
    assert int(out.split("MODULES ")[1].split()[0]) > 20, "the probe imported too few engine modules"
    assert (tmp_path / "out" / "latent.npy").is_file()


def test_render_command_never_imports_qt(tmp_path):
    gen = ROOT / "resources" / "models" / "demo" / "generator.safetensors"
    out = _probe("render", "--model", str(gen), "--seeds", "0", "--out", str(tmp_path), "--device", "cpu")
    assert "QT none" in out, out
    assert (tmp_path / "seed0000.png").is_file()


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (at the top or inside functions), for app/, engine/,
    kernels/, factory/ and main.py; ``from a.b import c`` counts as ``a.b.c`` when that is a module.
    Imports under ``if TYPE_CHECKING:`` are left out: they never run (annotations only)."""
    import ast

    def type_only(tree: ast.AST) -> set[int]:
        ids: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
                ids.update(id(n) for stmt in node.body for n in ast.walk(stmt))
        return ids

    files = {"main": ROOT / "main.py"}
    for pkg in ("app", "engine", "kernels", "factory"):
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.stem == "__init__" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = type_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            graph[name].update(t for t in targets if t in files and t != name)
    return graph


def test_no_import_cycle_anywhere():
    graph = _import_graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(node) :], node]))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    assert len(graph) > 60 and sum(map(len, graph.values())) > 100, "the graph was not read"


def test_runtime_never_imports_the_factory():
    graph = _import_graph()
    runtime = [m for m in graph if m.split(".")[0] in ("app", "engine", "kernels")]
    offenders = {m: sorted(t for t in graph[m] if t.startswith("factory")) for m in runtime}
    assert not {m: t for m, t in offenders.items() if t}
