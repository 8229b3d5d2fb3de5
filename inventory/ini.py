"""Ansible's INI inventory format, read by the rules of its ``ini`` plugin.

- Lines before any section are hosts of ``ungrouped``; ``#`` and ``;`` start
  comment lines, and ``#`` a comment after a host line or a section header.
- ``[group]`` lists hosts: a host name or range pattern (``web[01:20]``,
  ``db-[a:f]``, an optional ``:port``), then ``key=value`` host variables, split
  like a shell line (quotes keep spaces).
- ``[group:vars]`` holds one ``key=value`` per line for the group; the group must
  be declared elsewhere (``[group]`` or as a child).
- ``[group:children]`` lists child groups, which may be declared further down but
  must be declared somewhere.
- Values are Python literals where they parse as one (``8080``, ``['a', 'b']``,
  ``True``), otherwise strings, as Ansible reads them.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from inventory.hosts import (
    Inventory,
    InventoryError,
    expand,
    port_variables,
    safe_group_name,
)

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_COMMENT_MARKERS = ("#", ";")


def parse_ini(text: str) -> Inventory:
    """Read an INI inventory; :class:`InventoryError` names the line at fault."""
    inventory = Inventory()
    group, state = "ungrouped", "hosts"
    # Groups named by [x:vars] or [x:children] before their declaration, with the
    # line that named them: (state, line, parents naming it as a child).
    pending: dict[str, tuple[str, int, list[str]]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(_COMMENT_MARKERS):
            continue
        section = _SECTION.match(line)
        if section:
            group = safe_group_name(section.group(1))
            state = section.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise InventoryError(
                    f"section [{section.group(1)}:{state}] has an unknown type "
                    f"{state!r}: use [{group}], [{group}:vars] or [{group}:children]",
                    number,
                )
            _declare(inventory, pending, group, state, number)
            continue
        if line.startswith("[") and line.endswith("]"):
            raise InventoryError(
                f"invalid section {line!r}: a section is [group], [group:vars] or "
                "[group:children], with no spaces inside the brackets",
                number,
            )
        if state == "hosts":
            _host_line(inventory, group, line, number)
        elif state == "vars":
            key, value = _variable(line, number)
            inventory.add_group(group).set_variable(key, value, number)
        else:
            _child_line(inventory, pending, group, line, number)
    for name, (kind, number, parents) in pending.items():
        if kind == "vars":
            raise InventoryError(
                f"section [{name}:vars] is for a group declared nowhere: declare it "
                f"with a [{name}] section (or as a child of another group)",
                number,
            )
        raise InventoryError(
            f"[{parents[-1]}:children] names group {name!r}, declared nowhere: add "
            f"a [{name}] section with its hosts",
            number,
        )
    return inventory.finish()


def _declare(
    inventory: Inventory,
    pending: dict[str, tuple[str, int, list[str]]],
    group: str,
    state: str,
    number: int,
) -> None:
    """A section header: [x] and [x:children] declare x, [x:vars] only names it."""
    if group not in inventory.groups:
        if state == "vars" and group not in pending:
            pending[group] = ("vars", number, [])
        inventory.add_group(group, number)
    if state != "vars" and group in pending:
        kind, _, parents = pending.pop(group)
        if kind == "children":
            for parent in parents:
                inventory.add_child(parent, group, number)
    elif inventory.groups[group].line is None:
        inventory.groups[group].line = number


def _child_line(
    inventory: Inventory,
    pending: dict[str, tuple[str, int, list[str]]],
    group: str,
    line: str,
    number: int,
) -> None:
    match = _GROUP_NAME.match(line)
    if match is None:
        raise InventoryError(
            f"expected a group name in [{group}:children], got {line!r}: list one "
            "child group per line",
            number,
        )
    child = safe_group_name(match.group(1))
    if child in inventory.groups and child not in pending:
        inventory.add_child(group, child, number)
    elif child in pending:
        pending[child][2].append(group)
    else:
        pending[child] = ("children", number, [group])


def _host_line(inventory: Inventory, group: str, line: str, number: int) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise InventoryError(
            f"cannot split host line {line!r} ({exc}): close the quotes of its values",
            number,
        ) from None
    if not tokens:
        return
    variables: dict[str, Any] = port_variables(tokens[0])
    for token in tokens[1:]:
        if "=" not in token:
            raise InventoryError(
                f"expected key=value after host {tokens[0]!r}, got {token!r}: write "
                "host variables as key=value (quote values with spaces)",
                number,
            )
        key, value = token.split("=", 1)
        variables[key] = literal(value)
    for name in expand(tokens[0], number):
        inventory.add_host(name, group, number).variables.update(variables)


def _variable(line: str, number: int) -> tuple[str, Any]:
    if "=" not in line:
        raise InventoryError(
            f"expected key=value in a :vars section, got {line!r}: write one "
            "variable per line as key=value",
            number,
        )
    key, value = (part.strip() for part in line.split("=", 1))
    return key, literal(value)


def literal(value: str) -> Any:
    """A Python literal where ``value`` is one, else the string itself."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value
