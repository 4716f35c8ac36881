"""Import cycles among Strom's modules: every `import strom...` / `from strom... import`, those
under `if TYPE_CHECKING:` and inside functions included, as strongly connected components
(Tarjan).

    .venv/bin/python tools/import_cycles.py [src]

Prints each cycle (a component of more than one module) and exits 1 if there is any.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(tree: ast.AST, name: str, is_package: bool, known: set[str]) -> set[str]:
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a.b import c` imports a.b, and a.b.c when c is a module.
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def import_cycles(root: Path) -> list[list[str]]:
    """The import cycles among the modules under `root` (a src directory), smallest first."""
    paths = {module_name(root, p): p for p in root.rglob("*.py")}
    known = set(paths)
    graph = {
        name: imports_of(ast.parse(path.read_text()), name, path.name == "__init__.py", known)
        for name, path in paths.items()
    }
    # A package's own __init__ importing its submodules is not a cycle to fix.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    return sorted((c for c in strongly_connected(graph) if len(c) > 1), key=len)


def main() -> int:
    cycles = import_cycles(Path(sys.argv[1] if len(sys.argv) > 1 else "src"))
    for component in cycles:
        print(f"{len(component)} modules: " + ", ".join(component))
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
