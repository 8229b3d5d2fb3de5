"""An Ansible inventory as groups and hosts, with Ansible's rules for what a host
belongs to and which variables it ends up with.

The INI and YAML readers (``inventory.ini``, ``inventory.yamlfile``) fill an
:class:`Inventory`; :meth:`Inventory.finish` then applies what Ansible does after
reading a source: every group without a parent is a child of ``all``, a host in no
group but ``all`` is in ``ungrouped`` (and only such hosts are), and group depths
are computed for variable precedence.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any

# Characters Ansible replaces with "_" in INI section names.
_UNSAFE_GROUP_CHARS = re.compile(r"^[\d\W]|[^\w]")
# The range part of a host pattern: the first [...] in it.
_RANGE = re.compile(r"\[([^\]]*)\]")
# A host pattern's port suffix: "host:2222", "[::1]:2222" (the port is dropped:
# a runner is named, never reached, by the control plane).
_BRACKETED_PORT = re.compile(r"^\[([^\]]+)\]:(\d+)$")
_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):(\d+)$")
# Expanding a pattern into more hosts than this is refused: web[0:999999] is a
# typo, not a fleet.
MAX_RANGE_HOSTS = 100_000


class InventoryError(ValueError):
    """An inventory that cannot be read: what is wrong, where (1-based line, when
    known) and what to do about it."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass
class Group:
    name: str
    line: int | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    depth: int = 0
    # ansible_group_priority: among groups of equal depth, a higher one's variables
    # win. Ansible keeps it out of the group's variables.
    priority: int = 1

    def set_variable(self, key: str, value: Any, line: int | None = None) -> None:
        if key != "ansible_group_priority":
            self.variables[key] = value
            return
        try:
            self.priority = int(value)
        except (TypeError, ValueError):
            raise InventoryError(
                f"ansible_group_priority of group {self.name!r} must be a whole "
                f"number, not {value!r}",
                line,
            ) from None


@dataclass
class Host:
    name: str
    line: int | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)  # direct memberships


@dataclass
class Inventory:
    groups: dict[str, Group] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.add_group("all")
        self.add_group("ungrouped")

    # Building -------------------------------------------------------------------

    def add_group(self, name: str, line: int | None = None) -> Group:
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = Group(name, line)
        elif group.line is None:
            group.line = line
        return group

    def add_host(self, name: str, group: str, line: int | None = None) -> Host:
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = Host(name, line)
        target = self.add_group(group)
        # Checked on the host's few groups, not the group's many hosts.
        if group not in host.groups:
            target.hosts.append(name)
            host.groups.append(group)
        return host

    def add_child(self, parent: str, child: str, line: int | None = None) -> None:
        # A loop would give its groups no depth: Ansible refuses it too.
        if parent == child or child in self.ancestors(parent):
            raise InventoryError(
                f"group {child!r} cannot be a child of {parent!r}: {parent!r} is "
                f"already inside {child!r}; remove one of the two :children "
                "entries",
                line,
            )
        group, sub = self.add_group(parent), self.add_group(child)
        if child not in group.children:
            group.children.append(child)
            sub.parents.append(parent)

    # Ansible's reconciliation -----------------------------------------------------

    def finish(self) -> Inventory:
        """Attach orphan groups to ``all``, fix ``ungrouped``, compute depths."""
        for group in list(self.groups.values()):
            if group.name != "all" and not group.parents:
                self.add_child("all", group.name)
        ungrouped = self.groups["ungrouped"]
        for host in self.hosts.values():
            others = set(host.groups) - {"all", "ungrouped"}
            if others and "ungrouped" in host.groups:
                host.groups.remove("ungrouped")
                ungrouped.hosts.remove(host.name)
            elif not others and "ungrouped" not in host.groups:
                self.add_host(host.name, "ungrouped")
        self._depths()
        return self

    def _depths(self) -> None:
        order = [self.groups["all"]]
        self.groups["all"].depth = 0
        # Longest path from "all": relax in breadth-first order until stable
        # (the graph has no loops: add_child refuses them).
        while order:
            group = order.pop(0)
            for name in group.children:
                child = self.groups[name]
                if child.depth < group.depth + 1:
                    child.depth = group.depth + 1
                    order.append(child)

    # Questions ----------------------------------------------------------------------

    def ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.groups[name].parents) if name in self.groups else []
        while todo:
            parent = todo.pop()
            if parent not in seen:
                seen.add(parent)
                todo.extend(self.groups[parent].parents)
        return seen

    def descendants(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.groups[name].children) if name in self.groups else []
        while todo:
            child = todo.pop()
            if child not in seen:
                seen.add(child)
                todo.extend(self.groups[child].children)
        return seen

    def groups_of(self, host: str) -> set[str]:
        """Every group ``host`` is in, directly or through a child group."""
        direct = set(self.hosts[host].groups)
        found = set(direct)
        for name in direct:
            found |= self.ancestors(name)
        return found

    def hosts_in(self, group: str) -> set[str]:
        """The hosts of ``group`` and of its descendants."""
        names = {group} | self.descendants(group)
        return {h for n in names for h in self.groups[n].hosts}

    def host_vars(self, host: str) -> dict[str, Any]:
        """The host's variables as Ansible resolves them: groups by depth (then
        priority, then name) from ``all`` down, the host's own last."""
        merged: dict[str, Any] = {}
        groups = sorted(
            (self.groups[n] for n in self.groups_of(host)),
            key=lambda g: (g.depth, g.priority, g.name),
        )
        for group in groups:
            merged.update(group.variables)
        merged.update(self.hosts[host].variables)
        return merged


def safe_group_name(name: str) -> str:
    """An INI section's group name as Ansible stores it (invalid characters
    replaced with "_")."""
    return _UNSAFE_GROUP_CHARS.sub("_", name)


def split_port(pattern: str) -> tuple[str, int | None]:
    """The host part and port of ``host:port`` / ``[host]:port`` patterns."""
    for regex in (_BRACKETED_PORT, _PORT):
        match = regex.match(pattern)
        if match:
            return match.group(1), int(match.group(2))
    return pattern, None


def port_variables(pattern: str) -> dict[str, Any]:
    """``ansible_port`` when the pattern gives a port, as Ansible sets it (the
    host's own variables, set after it, win)."""
    port = split_port(pattern)[1]
    return {} if port is None else {"ansible_port": port}


def expand(pattern: str, line: int | None = None) -> list[str]:
    """The hostnames of a pattern with ranges: ``web[01:03]`` gives web01 web02
    web03, ``db-[a:c]`` db-a db-b db-c, ``[0:10:5]`` a step, several ranges
    multiply."""
    host = split_port(pattern)[0]
    if host.endswith(":"):
        raise InventoryError(
            f"host pattern {pattern!r} ends in ':', which is reserved for a port: "
            "add the port number or remove the ':'",
            line,
        )
    if "[" not in host:
        return [host]
    if host.strip() == "---":
        raise InventoryError("'---' starts a YAML document: load it as YAML", line)
    names = _expand(host, line)
    if len(names) > MAX_RANGE_HOSTS:
        raise InventoryError(
            f"host pattern {pattern!r} expands to {len(names)} hosts (at most "
            f"{MAX_RANGE_HOSTS}): check the range's bounds",
            line,
        )
    return names


def _expand(host: str, line: int | None) -> list[str]:
    match = _RANGE.search(host)
    if match is None:
        raise InventoryError(
            f"host pattern {host!r} has an unclosed '[': write ranges as "
            "[begin:end] or [begin:end:step]",
            line,
        )
    head, tail = host[: match.start()], host[match.end() :]
    sequence = _range_values(host, match.group(1), line)
    names: list[str] = []
    for value in sequence:
        name = f"{head}{value}{tail}"
        names.extend(_expand(name, line) if "[" in name else [name])
        if len(names) > MAX_RANGE_HOSTS:
            break
    return names


def _range_values(host: str, spec: str, line: int | None) -> list[str]:
    bounds = spec.split(":")
    hint = "write ranges as [begin:end] or [begin:end:step], e.g. web[01:20]"
    if len(bounds) not in (2, 3):
        raise InventoryError(f"host range in {host!r} is not begin:end: {hint}", line)
    begin, end = bounds[0] or "0", bounds[1]
    if not end:
        raise InventoryError(f"host range in {host!r} has no end: {hint}", line)
    try:
        step = int(bounds[2]) if len(bounds) == 3 else 1
    except ValueError:
        raise InventoryError(
            f"host range step in {host!r} is not a number", line
        ) from None
    if step < 1:
        raise InventoryError(f"host range step in {host!r} must be at least 1", line)
    letters = string.ascii_letters
    if begin in letters and end in letters:
        first, last = letters.index(begin), letters.index(end)
        if first > last:
            raise InventoryError(
                f"host range in {host!r} runs backwards: begin must come before end",
                line,
            )
        return list(letters[first : last + 1 : step])
    if not (begin.isdigit() and end.isdigit()):
        raise InventoryError(
            f"host range in {host!r} mixes letters and numbers: use a:f or 01:20",
            line,
        )
    width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
    if width and len(end) != width:
        raise InventoryError(
            f"host range in {host!r} pads its begin to {width} digits but not its "
            f"end: write both with the same width, e.g. [{begin}:{end.zfill(width)}]",
            line,
        )
    if int(begin) > int(end):
        raise InventoryError(
            f"host range in {host!r} runs backwards: begin must not exceed end", line
        )
    return [str(n).zfill(width) for n in range(int(begin), int(end) + 1, step)]
