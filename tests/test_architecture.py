"""The layout's rules, read from the source: no import cycle among the project's
modules, ``controlplane`` beneath the apps, no module past the style guide's length.

The import graph is built with ``ast`` from every ``import`` statement in a module,
wherever it stands (module level, inside a function, under ``TYPE_CHECKING``): an
import that runs late still ties the two modules together. ``from a import b``
points at the module ``a.b`` when there is one, otherwise at ``a``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "bench",
    "controlplane",
    "deploys",
    "diagnostics",
    "githubsim",
    "rotations",
    "runners",
)
FLOOR = "controlplane"
# The only controlplane modules that may import an app: they assemble the apps
# into one site and one worker.
COMPOSITION_ROOTS = {
    "controlplane.settings",
    "controlplane.urls",
    "controlplane.api_urls",
    "controlplane.runbook_urls",
    "controlplane.wsgi",
    "controlplane.celery",
}
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _imported(
    tree: ast.Module, module: str, is_package: bool, modules: set[str]
) -> Iterator[str]:
    """The project modules the import statements in ``tree`` load."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                # Relative: one part off per dot, a package being its own first.
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + int(is_package)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            # The module itself, or the one defining the imported name: the
            # longest prefix that is a project module.
            parts = name.split(".")
            found = (".".join(parts[:end]) for end in range(len(parts), 0, -1))
            target = next((m for m in found if m in modules), None)
            if target is not None and target != module:
                yield target


def import_graph() -> dict[str, set[str]]:
    sources = _sources()
    modules = set(sources)
    return {
        module: set(
            _imported(
                ast.parse(path.read_text(), filename=str(path)),
                module,
                path.name == "__init__.py",
                modules,
            )
        )
        for module, path in sources.items()
    }


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the components of more than one module (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_at_every_level() -> None:
    graph = import_graph()

    # Module level, inside a function (ready()), under TYPE_CHECKING.
    assert "controlplane.audit" in graph["controlplane.middleware"]
    assert "runners.notify" in graph["runners.apps"]
    type_only = ast.parse("if TYPE_CHECKING:\n    from pkg import b\n")
    assert set(_imported(type_only, "pkg.a", False, {"pkg.a", "pkg.b"})) == {"pkg.b"}
    # A name imported from a module points at that module.
    assert "controlplane.notifications" in graph["runners.notify"]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        {"a", "b", "c"}
    ]


def test_relative_imports_resolve_against_the_package() -> None:
    modules = {"pkg.a", "pkg.sub", "pkg.sub.b", "pkg.sub.c"}
    tree = ast.parse("from . import b\nfrom .. import a\n")

    in_module = set(_imported(tree, "pkg.sub.c", False, modules))
    in_package = set(_imported(tree, "pkg.sub", True, modules))

    assert in_module == in_package == {"pkg.sub.b", "pkg.a"}


def test_no_import_cycle() -> None:
    assert strongly_connected(import_graph()) == []


def test_controlplane_imports_no_app_outside_its_composition_roots() -> None:
    graph = import_graph()

    offenders = {
        module: sorted(t for t in targets if t.split(".")[0] != FLOOR)
        for module, targets in graph.items()
        if module.split(".")[0] == FLOOR and module not in COMPOSITION_ROOTS
    }

    assert {m: t for m, t in offenders.items() if t} == {}


def test_no_module_is_longer_than_the_style_guide_allows() -> None:
    lengths = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in _sources().values()
        if "migrations" not in path.parts
    }

    assert {path: n for path, n in lengths.items() if n > MAX_LINES} == {}
