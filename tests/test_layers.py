"""The package's rooms: every import inside ``wtal_pipe`` (module level, inside functions, or for type checking
only) goes to the same wing or to one below it, and no modules import each other in a circle. The wings,
bottom up (``docs/ARCHITECTURE.md``):

0. ground: ``errors``, ``cache``, ``layout``, ``intervals``, ``state_files``, ``device`` (and the package itself)
1. ``video``  2. ``methods``  3. ``features``  4. ``data``  5. ``run``  6. ``inference``  7. ``evaluation``
8. ``training``  9. ``tools``  10. ``web``  11. ``cli``, ``__main__``
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "wtal_pipe"
WINGS = [
    {"", "errors", "cache", "layout", "intervals", "state_files", "device"},
    {"video"},
    {"methods"},
    {"features"},
    {"data"},
    {"run"},
    {"inference"},
    {"evaluation"},
    {"training"},
    {"tools"},
    {"web"},
    {"cli", "__main__"},
]
FLOOR = {name: floor for floor, names in enumerate(WINGS) for name in names}
TOP_LEVEL_MODULES = 8  # at most, besides __init__ and __main__


def modules(root: Path) -> dict[str, Path]:
    """Dotted name inside the package (``training.train``; ``""`` for the package) -> file."""
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(root: Path) -> dict[str, set[str]]:
    """Each module -> the package's modules it imports, anywhere in its file."""
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                source = ".".join(filter(None, [*base, node.module or ""]))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wtal_pipe"):
                source = node.module.removeprefix("wtal_pipe").lstrip(".")  # type: ignore[union-attr]
            else:
                continue
            for alias in node.names:
                child = f"{source}.{alias.name}" if source else alias.name
                found.add(child if child in known else source)
        graph[name] = {target for target in found if target != name and target in known}
    return graph


def wing(module: str) -> str:
    return module.split(".")[0]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if FLOOR[wing(target)] > FLOOR[wing(source)]
    )


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_lives_in_a_named_wing():
    assert sorted({wing(name) for name in modules(PACKAGE)} - set(FLOOR)) == []
    top = [p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")]
    assert len(top) <= TOP_LEVEL_MODULES, sorted(top)


def test_imports_go_down_the_wings_and_never_in_circles():
    graph = imports(PACKAGE)
    assert upward_imports(graph) == []
    assert circles(graph) == []


def test_the_check_catches_a_circle_and_an_upward_import(tmp_path):
    """The same check on a copy of the package with one bad import each way added."""
    import shutil

    copy = tmp_path / "wtal_pipe"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "video" / "discover.py", "a") as fh:
        fh.write("\nfrom ..tools import bench_sections  # an upward import\n")
    with open(copy / "errors.py", "a") as fh:
        fh.write("\nfrom .cache import atomic_path  # cache imports errors: a circle\n")
    graph = imports(copy)
    assert upward_imports(graph) == ["video.discover -> tools.bench_sections"]
    assert circles(graph) == [["cache", "errors"]]
