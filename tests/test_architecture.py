"""The layout's rules, read from the source: no import cycle among the project's
modules, ``controlplane`` beneath the apps, no module past the style guide's length.

The import graph is built with ``ast`` from every ``import`` statement in a module,
wherever it stands (module level, inside a function, under ``TYPE_CHECKING``): an
import that runs late still ties the two modules together. ``from a import b``
points at the module ``a.b`` when there is one, otherwise at ``a``.

The allow-lists below name offenders that other parts of issue 10 remove (the
deploy engine package, the GitHub gateway package, the simulator split, the
rotations app). A listed entry that no longer offends fails the test too, so the
lists only shrink: delete the entry once its offence is gone.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "controlplane", "deploys", "githubsim", "runners")
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

# Import edges that close a cycle today, each with the part of issue 10 that
# removes it. Without these edges the graph must be acyclic.
KNOWN_CYCLE_EDGES: dict[tuple[str, str], str] = {}

# Modules over MAX_LINES today, each with the part of issue 10 that splits it.
KNOWN_LONG_MODULES: dict[str, str] = {
    # Every branch adds a block to settings; split it once they are merged.
    "controlplane/settings.py": "after the merge of issue 10's branches",
}


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
    graph = import_graph()
    for (importer, imported), _why in KNOWN_CYCLE_EDGES.items():
        assert imported in graph.get(importer, set()), (
            f"{importer} no longer imports {imported}: remove it from KNOWN_CYCLE_EDGES"
        )
        graph[importer].discard(imported)

    assert strongly_connected(graph) == []


def test_every_known_cycle_edge_still_closes_a_cycle() -> None:
    components = strongly_connected(import_graph())

    stale = [
        edge
        for edge in KNOWN_CYCLE_EDGES
        if not any(set(edge) <= component for component in components)
    ]

    assert stale == [], "no longer part of a cycle: remove from KNOWN_CYCLE_EDGES"


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

    long = {path for path, lines in lengths.items() if lines > MAX_LINES}
    assert long - set(KNOWN_LONG_MODULES) == set()
    assert set(KNOWN_LONG_MODULES) - long == set(), (
        "no longer too long: remove from KNOWN_LONG_MODULES"
    )
