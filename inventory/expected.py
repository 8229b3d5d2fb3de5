"""From an inventory's text to the runners it expects: read it in its format, pick
the runner hosts, and name each one's runner and expected labels."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from inventory import conf
from inventory.hosts import Inventory, InventoryError
from inventory.ini import parse_ini
from inventory.yamlfile import LOADER, parse_yaml

FORMATS = ("auto", "ini", "yaml", "list")
# GitHub's runner names: no whitespace, at most 100 characters (the registry's
# column).
_RUNNER_NAME = re.compile(r"^[^\s]{1,100}$")
_LABEL = re.compile(r"^[^\s,]{1,100}$")
# A YAML inventory's first line: a document start, or a group's key and a space.
_YAML_START = re.compile(r"^(?:---.*|[\w.-]+:(?:\s.*)?)$")


@dataclass(frozen=True)
class ExpectedHost:
    """A runner the inventory says should exist."""

    name: str  # the runner's name
    host: str  # the inventory hostname
    labels: tuple[str, ...] | None  # None: the inventory declares none
    groups: tuple[str, ...]
    line: int | None


@dataclass(frozen=True)
class Rules:
    runner_var: str
    labels_var: str
    group: str

    @classmethod
    def from_settings(cls) -> Rules:
        return cls(conf.runner_var(), conf.labels_var(), conf.runner_group())


def read(
    text: str, fmt: str = "auto", *, filename: str = "", rules: Rules | None = None
) -> list[ExpectedHost]:
    """The runners ``text`` expects, in inventory order; :class:`InventoryError`
    says what to fix (and where) when it cannot be read or names no runner."""
    rules = rules or Rules.from_settings()
    if fmt not in FORMATS:
        raise InventoryError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if "\x00" in text:
        raise InventoryError("the inventory is binary: load a text file")
    fmt = detect(text, filename) if fmt == "auto" else fmt
    if fmt == "list":
        hosts = _plain_list(text)
    else:
        inventory = parse_yaml(text) if fmt == "yaml" else parse_ini(text)
        hosts = runners_of(inventory, rules)
    _check_unique(hosts)
    return hosts


def detect(text: str, filename: str = "") -> str:
    """``yaml`` for .yml/.yaml/.json files and text that reads as a YAML mapping,
    else ``ini`` (a plain list of names is an INI inventory of ungrouped hosts)."""
    lower = filename.lower()
    if lower.endswith((".yml", ".yaml", ".json")):
        return "yaml"
    if lower.endswith((".ini", ".cfg", ".txt")):
        return "ini"
    try:
        data = yaml.load(text, Loader=LOADER)  # noqa: S506 # a safe loader
    except (yaml.YAMLError, RecursionError):
        # Broken YAML is still YAML when it starts like it: its reader names the
        # line at fault, where the INI reader would complain about a host "all:".
        return "yaml" if _YAML_START.match(_first_line(text)) else "ini"
    return "yaml" if isinstance(data, dict) else "ini"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", ";")):
            return stripped
    return ""


def runners_of(inventory: Inventory, rules: Rules) -> list[ExpectedHost]:
    """The runner hosts (those of ``rules.group`` when set) with their runner
    names and labels, resolved with Ansible's variable precedence."""
    if rules.group:
        if rules.group not in inventory.groups:
            raise InventoryError(
                f"the inventory has no group {rules.group!r} (INVENTORY_RUNNER_GROUP): "
                "add the group of runner hosts, or change the setting"
            )
        names = inventory.hosts_in(rules.group)
    else:
        names = set(inventory.hosts)
    hosts = []
    for name in inventory.hosts:  # inventory order
        if name not in names:
            continue
        host = inventory.hosts[name]
        variables = inventory.host_vars(name)
        runner = variables.get(rules.runner_var, name)
        if not isinstance(runner, str) or not _RUNNER_NAME.match(runner):
            raise InventoryError(
                f"host {name!r}: {rules.runner_var}={runner!r} is not a runner name "
                "(1 to 100 characters, no spaces)",
                host.line,
            )
        labels = _labels(name, variables.get(rules.labels_var), rules, host.line)
        groups = sorted(inventory.groups_of(name) - {"all"})
        hosts.append(ExpectedHost(runner, name, labels, tuple(groups), host.line))
    if not hosts:
        where = f"group {rules.group!r}" if rules.group else "the inventory"
        raise InventoryError(
            f"{where} lists no hosts: an empty inventory would make every registered "
            "runner rogue; load one that lists the fleet's runners"
        )
    return hosts


def _labels(
    host: str, value: Any, rules: Rules, line: int | None
) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise InventoryError(
            f"host {host!r}: {rules.labels_var} must be a list of labels or a "
            f"comma-separated string, not {value!r}",
            line,
        )
    labels = [item.strip() if isinstance(item, str) else item for item in items]
    for label in labels:
        if not isinstance(label, str) or not _LABEL.match(label):
            raise InventoryError(
                f"host {host!r}: label {label!r} in {rules.labels_var} is not a "
                "runner label (1 to 100 characters, no spaces or commas)",
                line,
            )
    return tuple(dict.fromkeys(labels))


def _plain_list(text: str) -> list[ExpectedHost]:
    """One runner name per line; blank lines and ``#`` comments are skipped."""
    hosts = []
    for number, raw in enumerate(text.splitlines(), start=1):
        name = raw.split("#", 1)[0].strip()
        if not name:
            continue
        if not _RUNNER_NAME.match(name):
            raise InventoryError(
                f"{name!r} is not a runner name (1 to 100 characters, no spaces): "
                "list one runner name per line",
                number,
            )
        hosts.append(ExpectedHost(name, name, None, (), number))
    if not hosts:
        raise InventoryError(
            "the list names no runners: an empty inventory would make every "
            "registered runner rogue"
        )
    return hosts


def _check_unique(hosts: list[ExpectedHost]) -> None:
    seen: dict[str, ExpectedHost] = {}
    for host in hosts:
        first = seen.setdefault(host.name, host)
        if first is not host:
            where = f" (line {first.line})" if first.line else ""
            raise InventoryError(
                f"runner {host.name!r} is named by hosts {first.host!r}{where} and "
                f"{host.host!r}: give each host its own runner name",
                host.line,
            )
