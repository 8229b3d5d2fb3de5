"""Differential test: the same inventories read by ansible-core's own
``InventoryManager`` and by ``inventory.ini`` / ``inventory.yamlfile`` give the same
hosts, groups, memberships and resolved variables.

ansible-core is a dev requirement only (GPL-3; the application never imports it).
Skipped when it is not installed, a failure when REQUIRE_TOOLS is set."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from inventory.hosts import Inventory
from inventory.ini import parse_ini
from inventory.yamlfile import parse_yaml
from tests.test_inventory_parse import COMPLEX_INI, INI_EXAMPLE, YAML_EXAMPLE

RANGES_INI = """# ranges, ports, children declared before their groups, quoting
[runners:children]
prod
staging

[prod]
prod-[01:12].dc1.example.com runner_labels=production,deploy
db-[a:f]:2222 ansible_user=deploy
rack[1:2]-node[08:10] role="rack node" weight=1.5

[staging]
stg[0:20:5] runner_name=staging-x

[staging:vars]
runner_labels=['staging', 'linux']
empty=
dict={'a': 1}

[all:vars]
ansible_python_interpreter=/usr/bin/python3
"""

FLEET_YAML = """all:
  vars:
    runner_labels: [linux-build]
  children:
    deploy_runners:
      vars:
        runner_labels: [production, deploy]
        ansible_group_priority: 10
      hosts:
        prod-[1:3].example.com:
        prod-9.example.com:
          runner_name: prod-9
      children:
        canaries:
          hosts:
            canary-[a:c]:
              runner_labels: canary
    builders:
      hosts: build-1.example.com
      vars:
        runner_labels: [builder]
    ungrouped:
      hosts:
        loose-1:
"""

# ansible-core's unit test of an explicit [ungrouped] section, plus a host listed
# both there and in a group (Ansible then drops it from ungrouped).
UNGROUPED_INI = """host1
[ungrouped]
host2
host3 # also in servers
; a comment line
[servers]
host3
host4
host5
"""

CASES = [
    ("ini-explicit-ungrouped", "ini", UNGROUPED_INI),
    ("ini-documentation", "ini", INI_EXAMPLE),
    ("ini-complex", "ini", COMPLEX_INI),
    ("ini-ranges", "ini", RANGES_INI),
    ("yaml-documentation", "yaml", YAML_EXAMPLE),
    ("yaml-fleet", "yaml", FLEET_YAML),
]
# Variables ansible-core adds about the source file itself.
SOURCE_VARS = {"inventory_file", "inventory_dir"}


def ansible_reads(path: Path, plugin: str) -> dict[str, Any]:
    if not os.environ.get("REQUIRE_TOOLS"):
        pytest.importorskip("ansible", reason="ansible-core (dev) is not installed")
    from ansible import constants
    from ansible.inventory.helpers import get_group_vars
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.utils.vars import combine_vars

    constants.INVENTORY_ENABLED = [plugin]
    manager = InventoryManager(loader=DataLoader(), sources=[str(path)])
    data = manager._inventory
    return {
        "hosts": {
            name: {
                "groups": {g.name for g in host.get_groups()},
                "vars": {
                    k: _plain(v)
                    for k, v in combine_vars(
                        get_group_vars(host.get_groups()), host.vars
                    ).items()
                    if k not in SOURCE_VARS
                },
            }
            for name, host in data.hosts.items()
        },
        "groups": {
            name: {
                "hosts": {h.name for h in group.hosts},
                "children": {c.name for c in group.child_groups},
            }
            for name, group in data.groups.items()
        },
    }


def ours(inventory: Inventory) -> dict[str, Any]:
    return {
        "hosts": {
            name: {
                "groups": inventory.groups_of(name),
                "vars": inventory.host_vars(name),
            }
            for name in inventory.hosts
        },
        "groups": {
            name: {"hosts": set(group.hosts), "children": set(group.children)}
            for name, group in inventory.groups.items()
        },
    }


def _plain(value: Any) -> Any:
    """ansible-core's tagged values as plain Python ones."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


@pytest.mark.parametrize(("name", "plugin", "text"), CASES, ids=[c[0] for c in CASES])
def test_ansible_core_and_this_parser_agree(
    name: str, plugin: str, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANSIBLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ANSIBLE_LOCAL_TEMP", str(tmp_path / "tmp"))
    path = tmp_path / f"{name}.{'yml' if plugin == 'yaml' else 'ini'}"
    path.write_text(text)
    expected = ansible_reads(path, plugin)
    mine = ours(parse_yaml(text) if plugin == "yaml" else parse_ini(text))
    assert mine["hosts"].keys() == expected["hosts"].keys()
    for host, facts in expected["hosts"].items():
        assert mine["hosts"][host] == facts, host
    assert mine["groups"] == expected["groups"]
