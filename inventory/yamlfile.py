"""Ansible's YAML inventory format, read by the rules of its ``yaml`` plugin.

The top level maps group names to groups; a group is a mapping (or empty) with
``hosts`` (host patterns mapping to their variables, or empty), ``vars`` and
``children`` (groups, nested the same way). A string where a mapping is expected
names one entry. Read from PyYAML's node tree, so every complaint names its line.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from inventory.hosts import Inventory, InventoryError, expand, port_variables

SECTIONS = ("hosts", "vars", "children")
# libyaml's loader where PyYAML was built with it (its wheels are): several times
# faster on a fleet-sized inventory, with the same nodes and marks.
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TOO_DEEP = "the YAML nests too deeply to read: an inventory needs a few levels only"


def parse_yaml(text: str) -> Inventory:
    try:
        root = yaml.compose(text, Loader=LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InventoryError(
            f"not valid YAML ({problem}): fix the indentation or quoting there",
            mark.line + 1 if mark is not None else None,
        ) from None
    except RecursionError:
        raise InventoryError(_TOO_DEEP) from None
    if root is None:
        raise InventoryError("the YAML inventory is empty: give at least one group")
    if not isinstance(root, MappingNode):
        raise InventoryError(
            "a YAML inventory maps group names to groups (e.g. 'all:' with 'hosts:' "
            f"below it), not a {_kind(root)}",
            _line(root),
        )
    if any(_text(key) == "plugin" for key, _ in root.value):
        raise InventoryError(
            "this is an inventory plugin's configuration, not an inventory: export "
            "the hosts with 'ansible-inventory --list -y' and load that",
            _line(root),
        )
    inventory = Inventory()
    for key, value in root.value:
        _group(inventory, _name(key, "group"), value)
    return inventory.finish()


def _group(inventory: Inventory, name: str, node: Node) -> str:
    if not isinstance(node, MappingNode) and not _is_null(node):
        raise InventoryError(
            f"group {name!r} must be a mapping with hosts, vars or children, not a "
            f"{_kind(node)}",
            _line(node),
        )
    inventory.add_group(name, _line(node))
    if _is_null(node):
        return name
    assert isinstance(node, MappingNode)  # noqa: S101 # checked above
    for key, value in node.value:
        section = _text(key)
        if section not in SECTIONS:
            raise InventoryError(
                f"group {name!r} has an unexpected key {section!r}: a group holds "
                "only hosts, vars and children (indent hosts under 'hosts:')",
                _line(key),
            )
        if _is_null(value):
            continue
        entries = _entries(value, name, section)
        for entry_key, entry_value in entries:
            entry = _name(entry_key, "host" if section == "hosts" else section)
            if section == "vars":
                inventory.groups[name].set_variable(
                    entry, _construct(entry_value), _line(entry_key)
                )
            elif section == "children":
                child = _group(inventory, entry, entry_value)
                inventory.add_child(name, child, _line(entry_key))
            else:
                variables = port_variables(entry)
                variables.update(_host_variables(entry, entry_value))
                for host in expand(entry, _line(entry_key)):
                    added = inventory.add_host(host, name, _line(entry_key))
                    added.variables.update(variables)
    return name


def _entries(node: Node, group: str, section: str) -> list[tuple[Node, Node]]:
    """A section's (key, value) pairs; a lone string is one key with no value."""
    if isinstance(node, ScalarNode):
        return [(node, ScalarNode("tag:yaml.org,2002:null", "", node.start_mark))]
    if not isinstance(node, MappingNode):
        raise InventoryError(
            f"'{section}' of group {group!r} must be a mapping, not a {_kind(node)}"
            + (
                ": write each host as 'name:' on its own line"
                if section == "hosts"
                else ""
            ),
            _line(node),
        )
    return list(node.value)


def _host_variables(host: str, node: Node) -> dict[str, Any]:
    if _is_null(node):
        return {}
    value = _construct(node)
    if not isinstance(value, dict):
        raise InventoryError(
            f"host {host!r} must map to its variables (key: value lines), not a "
            f"{_kind(node)}",
            _line(node),
        )
    return {str(k): v for k, v in value.items()}


def _construct(node: Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise InventoryError(f"cannot read this value: {exc}", _line(node)) from None
    except RecursionError:
        raise InventoryError(_TOO_DEEP, _line(node)) from None
    finally:
        loader.dispose()


def _name(node: Node, what: str) -> str:
    if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:str":
        value = node.value if isinstance(node, ScalarNode) else _kind(node)
        raise InventoryError(
            f"{what} name {value!r} must be a string: quote it",
            _line(node),
        )
    if not node.value:
        raise InventoryError(f"empty {what} name", _line(node))
    return str(node.value)


def _text(node: Node) -> str:
    return str(node.value) if isinstance(node, ScalarNode) else ""


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, ScalarNode):
        return "single value"
    return "list"


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1
