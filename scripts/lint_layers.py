#!/usr/bin/env python3
"""Lint rule: the layers (docs/architecture.md), as the imports draw them.

Bottom up: ``crypto`` (pure) → the shared kernel (``blagh``, without ``blagh.cli``) → the roles
(``source_interface``, ``journalist_interface``, ``onion``, ``transfer``), side by side → the
command line (``blagh.cli``), the one place that wires roles together.  A module may import its
own unit and the units below it: never one above, never another role.  Every import counts,
including one inside a function (a lazy import is still a dependency) and one under
``if TYPE_CHECKING:``.  And no import cycle between modules, counting the imports inside functions
too (a lazy import is how a cycle hides); only the typing-only ones under ``if TYPE_CHECKING:``
are left out of that, since they never run.

Only the application packages are read; tests, bench and scripts sit above everything.
``make lint`` runs this.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("crypto", "blagh", "source_interface", "journalist_interface", "onion", "transfer")
ROLES = ("source_interface", "journalist_interface", "onion", "transfer")
CLI = "blagh.cli"

RANK = {"crypto": 0, "kernel": 1, **dict.fromkeys(ROLES, 2), "cli": 3}
"""Each unit's layer: a unit imports its own modules and those of lower layers only."""


def unit_of(module: str) -> str:
    """``crypto``, ``kernel``, a role's package name, or ``cli``."""
    if module == CLI or module.startswith(CLI + "."):
        return "cli"
    top = module.split(".", 1)[0]
    return "kernel" if top == "blagh" else top


@dataclass(frozen=True)
class Edge:
    """One import: ``source`` imports ``target`` at ``path``:``line``."""

    source: str
    target: str
    path: str
    line: int
    runs: bool
    """False for an import under ``if TYPE_CHECKING:``, which only the type checker reads."""


def modules(root: Path) -> dict[str, Path]:
    """Every module of the application packages under ``root``, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module ``name`` starts with (``a.b.C`` → ``a.b``), or None if ours
    has none of it (the standard library, a dependency)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, at any depth, and whether it ever runs (not under
    ``if TYPE_CHECKING:``)."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, runs: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, runs))
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:
                    visit(ast.Module(body=[statement], type_ignores=[]), False)
                for statement in child.orelse:
                    visit(ast.Module(body=[statement], type_ignores=[]), runs)
            else:
                visit(child, runs)

    visit(tree, True)
    return found


def edges(root: Path) -> list[Edge]:
    """Every import from one of our modules to another one."""
    known = modules(root)
    found = []
    for module, path in known.items():
        is_package = path.name == "__init__.py"
        where = str(path.relative_to(root))
        for node, runs in _imports(ast.parse(path.read_text("utf-8"), where)):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join([*package, *([base] if base else [])])
                # ``from a import b``: the module a.b when there is one, else a itself.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            for name in dict.fromkeys(targets):  # once per module, in order
                target = _resolve(name, known)
                edge = Edge(module, target or "", where, node.lineno, runs)
                if target is not None and target != module and edge not in found:
                    found.append(edge)
    return found


def layer_problems(found: list[Edge]) -> list[str]:
    problems = []
    for edge in found:
        source, target = unit_of(edge.source), unit_of(edge.target)
        if source == target or RANK[target] < RANK[source]:
            continue
        how = "sideways, role to role" if RANK[target] == RANK[source] else "up a layer"
        problems.append(
            f"{edge.path}:{edge.line}: {edge.source} imports {edge.target} "
            f"({how}: {source} → {target})"
        )
    return problems


def cycles(found: list[Edge]) -> list[list[str]]:
    """The import cycles: strongly connected groups of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in found:
        if edge.runs:
            graph.setdefault(edge.source, set()).add(edge.target)
            graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(groups)


def check(root: Path) -> list[str]:
    found = edges(root)
    problems = layer_problems(found)
    problems += [f"import cycle: {' ↔ '.join(group)}" for group in cycles(found)]
    return problems


def main() -> int:
    sys.setrecursionlimit(10_000)
    problems = check(Path(__file__).resolve().parent.parent)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
