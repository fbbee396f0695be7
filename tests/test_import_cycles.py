"""No import cycles inside polydiff and polydiff_images, hidden behind function-level imports or not.

A cycle that only closes inside a function body still runs (the module is finished by then), but
it is a layering error: two modules that each need the other are one idea split in two, and the
cycle turns into an ImportError the day someone hoists the import. The graph is read with ``ast``,
so nothing is imported.

Conventions:

- every ``import`` statement counts, at module level or inside a function, except under
  ``if TYPE_CHECKING:`` (it never runs);
- ``import a.b.c`` is an edge to ``a.b.c``; ``from a.b import c`` is an edge to the submodule
  ``a.b.c`` when there is one, else to ``a.b`` (its ``__init__`` for a package);
- importing ``a.b.c`` first runs the ``__init__`` of ``a`` and ``a.b``, so the import is an edge to
  those packages too — except to the packages the importer itself lies in: they are already
  running when it runs, which is why a package's ``__init__`` may import its own submodules. So
  ``polydiff.guidance`` importing ``polydiff.sampling.common`` depends on
  ``polydiff/sampling/__init__.py`` (which therefore must not import guidance back), while
  ``polydiff.sampling.unipc`` importing it does not. A submodule that takes *names* from its own
  package (``from polydiff.sampling import X`` inside ``polydiff/sampling/euler.py``) is an
  explicit edge to the ``__init__``, and a cycle when that ``__init__`` imports it back (a
  registry of such submodules belongs in a leaf module they import instead).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "polydiff": ROOT / "polydiff",
    "polydiff_images": ROOT / "modalities" / "images" / "polydiff_images",
}

Edge = tuple[str, str, int]  # (target module, file, line)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([name, *parts])] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _edges(module: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    rel = str(path.relative_to(ROOT))
    out: list[Edge] = []
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            subs = [f"{base}.{alias.name}" for alias in node.names]
            targets = [s for s in subs if s in modules]
            if len(targets) < len(subs):  # some names are attributes of base itself
                targets.append(base)
        for target in targets:
            if target not in modules:  # a third-party module
                continue
            out.append((target, rel, node.lineno))
            parent = target.rpartition(".")[0]
            while parent and parent in modules and not _inside(module, parent):
                out.append((parent, rel, node.lineno))
                parent = parent.rpartition(".")[0]
    return out


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def import_graph() -> dict[str, list[Edge]]:
    """Module -> its imports of our own modules, with where each import is written."""
    modules = _modules()
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def _components(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative) with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted({t for t, _, _ in graph[root]})))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted({t for t, _, _ in graph[child]}))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    result.append(sorted(component))
    return result


def _cycle_in(component: list[str], graph: dict[str, list[Edge]]) -> list[Edge]:
    """One concrete cycle through the component's first module, as the edges that close it."""
    members = set(component)
    start = component[0]
    # breadth-first from start back to start, inside the component
    previous: dict[str, tuple[str, Edge]] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in graph[node]:
                target = edge[0]
                if target not in members or target in previous:
                    continue
                previous[target] = (node, edge)
                if target == start:
                    path: list[Edge] = []
                    cur = start
                    while True:
                        node_before, e = previous[cur]
                        path.append(e)
                        cur = node_before
                        if cur == start:
                            return path[::-1]
                following.append(target)
        frontier = following
    raise AssertionError(f"no cycle found in component {component}")  # Tarjan guarantees one


def describe(graph: dict[str, list[Edge]]) -> list[str]:
    """One line per cycle: ``a -> b (file:line) -> a (file:line)``."""
    lines = []
    for module, edges in sorted(graph.items()):
        for target, file, line in edges:
            if target == module:
                lines.append(f"{module} imports itself ({file}:{line})")
    for component in _components(graph):
        cycle = _cycle_in(component, graph)
        text = component[0] + "".join(f" -> {t} ({f}:{n})" for t, f, n in cycle)
        lines.append(f"{text}   [component: {', '.join(component)}]")
    return lines


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import pkg.c\n"
        "def g():\n    from ..a import f\n    import pkg.sub\n"
    )
    (pkg / "c.py").write_text("import pkg.sub.b\n")
    (pkg / "d.py").write_text("def h():\n    from pkg.sub.b import g\n")
    modules = {
        "pkg": pkg / "__init__.py",
        "pkg.a": pkg / "a.py",
        "pkg.c": pkg / "c.py",
        "pkg.d": pkg / "d.py",
        "pkg.sub": pkg / "sub" / "__init__.py",
        "pkg.sub.b": pkg / "sub" / "b.py",
    }
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        graph = {name: _edges(name, path, modules) for name, path in modules.items()}
    finally:
        ROOT = saved
    targets = {name: sorted({t for t, _, _ in edges}) for name, edges in graph.items()}
    assert targets == {
        "pkg": [],
        "pkg.a": ["pkg.sub", "pkg.sub.b"],
        "pkg.c": ["pkg.sub", "pkg.sub.b"],  # running pkg.sub.b runs pkg/sub/__init__.py first
        "pkg.d": ["pkg.sub", "pkg.sub.b"],
        "pkg.sub": ["pkg.sub.b"],  # its own package: no edge back to pkg.sub
        "pkg.sub.b": ["pkg.a", "pkg.sub"],  # not pkg.c: only under TYPE_CHECKING
    }
    lines = describe(graph)
    assert len(lines) == 1
    assert lines[0].startswith("pkg.a -> pkg.sub.b (pkg/a.py:2) -> pkg.a (pkg/sub/b.py:5)")
    assert lines[0].endswith("[component: pkg.a, pkg.sub, pkg.sub.b]")


def test_no_import_cycles():
    graph = import_graph()
    assert "polydiff.sampling.euler" in graph and "polydiff_images.data" in graph
    cycles = describe(graph)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
