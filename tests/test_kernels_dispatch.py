"""How the kernel modules fit together: their import graph has no cycle, and the ``impl`` given to a
generator reaches every kernel call of its mapping and synthesis networks.

Run as a script (``python3 tests/test_kernels_dispatch.py``) to print the import graph of kernels/.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
import torch

KERNELS = Path(__file__).resolve().parents[1] / "kernels"
OPS = ("bias_act", "upfirdn2d", "filtered_lrelu")


def _module_name(path: Path) -> str:
    return "kernels" if path.stem == "__init__" else f"kernels.{path.stem}"


def _resolve(target: str, submodules: set[str]) -> str:
    """``kernels.x.y`` -> the kernels module whose code runs for it (a name that is not a submodule of
    the package is an attribute of the package itself, so its code is kernels/__init__.py)."""
    parts = target.split(".")
    return f"kernels.{parts[1]}" if len(parts) > 1 and f"kernels.{parts[1]}" in submodules else "kernels"


def kernel_import_graph(root: Path = KERNELS) -> dict[str, set[str]]:
    """Module -> the kernels modules it imports anywhere in its code: at the top, inside functions
    and methods, relative or absolute, and through ``importlib.import_module('kernels...')``."""
    files = sorted(root.glob("*.py"))
    submodules = {_module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        name = _module_name(path)
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: every kernels module sits directly in the package
                    base = "kernels" + (f".{base}" if base else "")
                # ``from pkg import name``: name is a submodule or an attribute of pkg's __init__.
                targets = [f"{base}.{alias.name}" for alias in node.names] if base == "kernels" else [base]
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute | ast.Name)
                and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                targets = [node.args[0].value]
            edges |= {_resolve(t, submodules) for t in targets if t == "kernels" or t.startswith("kernels.")}
        graph[name] = edges
    return graph


def topological_order(graph: dict[str, set[str]]) -> list[str]:
    """Modules bottom (imports nothing from kernels) to top; raises ValueError naming a cycle."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == "done":
            return
        if state.get(node) == "active":
            cycle = path[path.index(node) :] + [node]
            raise ValueError("import cycle: " + " -> ".join(cycle))
        state[node] = "active"
        for dep in sorted(graph.get(node, ())):
            visit(dep, path + [node])
        state[node] = "done"
        order.append(node)

    for node in sorted(graph):
        visit(node, [])
    return order


def test_kernel_modules_import_one_way():
    graph = kernel_import_graph()
    order = topological_order(graph)  # raises on any cycle, self-imports included
    assert set(order) == set(graph)
    # The layering the package docstring describes: reference math at the bottom, the CUDA extension
    # on the reference math only, the C++ CPU kernel on nothing, the selector never on the
    # dispatchers, the package on top.
    assert graph["kernels._ref"] == set() and graph["kernels._polyphase"] == set()
    assert graph["kernels._fast"] == {"kernels._ref", "kernels._polyphase", "kernels.cpu_ext"}
    assert graph["kernels.cpu_ext"] == set()
    assert graph["kernels.cuda_ext"] == {"kernels._ref"}
    assert graph["kernels._select"] == {"kernels.cuda_ext"}
    assert graph["kernels"] == {f"kernels.{op}" for op in OPS}
    assert order[-1] == "kernels"


def test_graph_check_sees_function_level_cycles(tmp_path):
    """The checker itself: an import inside a function that points back up is reported."""
    for name, text in {
        "__init__.py": "from kernels.a import f\n",
        "a.py": "from kernels import b\n\ndef f():\n    return b\n",
        "b.py": "def g():\n    from kernels.a import f\n    return f\n",
    }.items():
        (tmp_path / name).write_text(text)
    graph = kernel_import_graph(tmp_path)
    assert graph == {"kernels": {"kernels.a"}, "kernels.a": {"kernels.b"}, "kernels.b": {"kernels.a"}}
    with pytest.raises(ValueError, match="import cycle"):
        topological_order(graph)


def _tiny_generator():
    from engine import Generator

    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=16,
        img_channels=3,
        channel_base=64,
        channel_max=8,
        num_layers=4,
        num_critical=2,
        margin_size=2,
        use_radial_filters=True,  # radial (2-D) down filters too, so every kind of resampling runs
        mapping_kwargs=dict(num_layers=2),
    )
    return G.eval()


@pytest.mark.parametrize("impl", ["ref", "fast"])
def test_generator_impl_reaches_every_kernel_call(impl, monkeypatch):
    """Every kernel call of G(...), G.mapping, G.synthesis (from ws and from StyleSpace styles, with
    and without gradient checkpointing) runs the requested implementation, the mapping network's
    bias_act included. SG3_KERNELS names the other implementation, so a call that drops ``impl``
    would run that one and be caught."""
    from kernels import _fast, _ref, _select, cuda_ext

    monkeypatch.setenv("SG3_KERNELS", "fast" if impl == "ref" else "ref")
    chosen: list[tuple[str, str | None, str]] = []  # (op, impl requested, impl selected)
    ran: list[tuple[str, str]] = []  # (implementation, op), outermost calls only
    depth = [0]

    real_select = _select.select

    def spy_select(op: str, requested: str | None, x: torch.Tensor) -> str:
        which = real_select(op, requested, x)
        chosen.append((op, requested, which))
        return which

    def spy_impl(family: str, op: str, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if depth[0] == 0:
                ran.append((family, op))
            depth[0] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1

        return wrapper

    monkeypatch.setattr(_select, "select", spy_select)
    for family, module in (("ref", _ref), ("fast", _fast)):
        for op in OPS:
            monkeypatch.setattr(module, op, spy_impl(family, op, getattr(module, op)))
    monkeypatch.setattr(cuda_ext, "filtered_lrelu", spy_impl("cuda", "filtered_lrelu", cuda_ext.filtered_lrelu))

    G = _tiny_generator()
    n_layers = len(G.synthesis.layers())
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        img = G(z, impl=impl)
        ws = G.mapping(z, impl=impl)
        assert chosen.count(("bias_act", impl, impl)) >= 2 * G.mapping.num_layers  # both mapping runs
        from_ws = G.synthesis(ws, impl=impl)
        from_styles = G.synthesis(styles=G.synthesis.styles(ws, impl=impl), impl=impl)
    wsg = ws.clone().requires_grad_(True)
    G.synthesis(wsg, impl=impl, checkpoint_layers=True).square().sum().backward()
    assert wsg.grad is not None and bool(wsg.grad.abs().sum() > 0)

    assert chosen, "no kernel call went through the selector"
    assert {c for c in chosen if c[1:] != (impl, impl)} == set()
    # Four synthesis forwards (plus the recomputation of the checkpointed one in the backward pass).
    assert sum(op == "filtered_lrelu" for op, _, _ in chosen) >= 4 * n_layers
    assert {family for family, _ in ran} == {impl}
    assert {op for _, op in ran} >= {"bias_act", "filtered_lrelu"}
    torch.testing.assert_close(from_ws, img)
    torch.testing.assert_close(from_styles, img, rtol=1e-5, atol=1e-5)


def test_generator_ref_and_fast_agree():
    G = _tiny_generator()
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, fast = G(z, impl="ref"), G(z, impl="fast")
    assert float((fast - ref).norm() / ref.norm()) < 1e-5


if __name__ == "__main__":
    g = kernel_import_graph()
    for module in topological_order(g):
        print(f"{module:24s} imports {', '.join(sorted(g[module])) or '(nothing from kernels)'}")
    print("acyclic: yes")
