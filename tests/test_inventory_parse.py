"""Ansible inventory parsing on real-world shapes: the examples of Ansible's own
documentation and tests (groups, children, vars, ranges, ungrouped/all, comments),
in INI and YAML, and the runners a control plane reads from them."""

from __future__ import annotations

import pytest

from inventory.expected import Rules, detect, read
from inventory.hosts import InventoryError, expand
from inventory.ini import parse_ini
from inventory.yamlfile import parse_yaml

RULES = Rules("runner_name", "runner_labels", "")

# The ini plugin's documented example (ansible/plugins/inventory/ini.py).
INI_EXAMPLE = """# Example 1
[web]
host1
host2 ansible_port=222 # defined inline, interpreted as an integer

[web:vars]
http_port=8080 # all members of 'web' will inherit these
myvar=23 # defined in a :vars section, interpreted as a string

[web:children] # child groups will automatically add their hosts to parent group
apache
nginx

[apache]
tomcat1
tomcat2 myvar=34 # host specific vars override group vars
tomcat3 mysecret="'03#pa33w0rd'" # proper quoting to prevent value changes

[nginx]
jenkins1

[nginx:vars]
has_java = True # vars in child groups override same in parent

[all:vars]
has_java = False # 'all' is 'top' parent
"""

# ansible-inventory's integration test inventory (files/complex.ini).
COMPLEX_INI = """ihavenogroup

[all]
hostinall

[all:vars]
ansible_connection=local

[test_group1]
test1 myvar=something
test2 myvar=something2
test3

[test_group2]
test1
test4
test5

[test_group3]
test2 othervar=stuff
test3
test6

[parent_1:children]
test_group1

[parent_2:children]
test_group1

[parent_3:children]
test_group2
test_group3

[parent_3]
test2
"""

# The yaml plugin's documented example (ansible/plugins/inventory/yaml.py).
YAML_EXAMPLE = """all: # keys must be unique, i.e. only one 'hosts' per group
    hosts:
        test1:
        test2:
            host_var: value
    vars:
        group_all_var: value
    children:   # key order does not matter, indentation does
        other_group:
            children:
                group_x:
                    hosts:
                        test5   # Note that one machine will work without a colon
                group_y:
                    hosts:
                        test6:  # So always use a colon
            vars:
                g2_var2: value3
            hosts:
                test4:
                    ansible_host: 127.0.0.1
        last_group:
            hosts:
                test1 # same host as above, additional group membership
            vars:
                group_last_var: value
"""


def test_the_ini_documentation_example_reads_as_ansible_reads_it() -> None:
    inv = parse_ini(INI_EXAMPLE)
    assert set(inv.hosts) == {
        "host1",
        "host2",
        "tomcat1",
        "tomcat2",
        "tomcat3",
        "jenkins1",
    }
    assert inv.hosts_in("web") == set(inv.hosts)
    assert inv.groups["web"].children == ["apache", "nginx"]
    assert inv.groups["ungrouped"].hosts == []
    # Host line values are literals, :vars ones too where they parse as one.
    assert inv.host_vars("host2")["ansible_port"] == 222
    assert inv.host_vars("tomcat1")["http_port"] == 8080
    assert inv.host_vars("tomcat2")["myvar"] == 34
    assert inv.host_vars("tomcat1")["myvar"] == 23
    assert inv.host_vars("tomcat3")["mysecret"] == "03#pa33w0rd"
    # Child groups override parents, which override all.
    assert inv.host_vars("jenkins1")["has_java"] is True
    assert inv.host_vars("tomcat1")["has_java"] is False
    assert inv.groups["nginx"].depth == 2


def test_ansibles_complex_inventory_keeps_ungrouped_and_all_right() -> None:
    inv = parse_ini(COMPLEX_INI)
    assert sorted(inv.groups["ungrouped"].hosts) == ["hostinall", "ihavenogroup"]
    assert inv.groups_of("test2") == {
        "all",
        "test_group1",
        "test_group3",
        "parent_1",
        "parent_2",
        "parent_3",
    }
    assert inv.hosts_in("parent_3") == {"test1", "test2", "test3", "test4"} | {
        "test5",
        "test6",
    }
    assert inv.host_vars("test5")["ansible_connection"] == "local"
    assert inv.host_vars("test2") == {
        "ansible_connection": "local",
        "myvar": "something2",
        "othervar": "stuff",
    }


def test_the_yaml_documentation_example_reads_as_ansible_reads_it() -> None:
    inv = parse_yaml(YAML_EXAMPLE)
    assert set(inv.hosts) == {"test1", "test2", "test4", "test5", "test6"}
    assert sorted(inv.groups["ungrouped"].hosts) == ["test2"]
    assert inv.groups_of("test5") == {"all", "other_group", "group_x"}
    assert inv.host_vars("test6") == {"group_all_var": "value", "g2_var2": "value3"}
    assert inv.host_vars("test1")["group_last_var"] == "value"
    assert inv.host_vars("test2")["host_var"] == "value"


@pytest.mark.parametrize(
    ("pattern", "hosts"),
    [
        ("web[01:03]", ["web01", "web02", "web03"]),
        ("db-[a:c]", ["db-a", "db-b", "db-c"]),
        ("a[1:10:3]", ["a1", "a4", "a7", "a10"]),
        ("a[a:i:3]", ["aa", "ad", "ag"]),
        ("a[a:b][c:d]", ["aac", "aad", "abc", "abd"]),
        ("a[0:1][2:3]", ["a02", "a03", "a12", "a13"]),
        ("rack[1:2]-node[08:10].example.com", ["rack1-node08.example.com"]),
        ("host:2222", ["host"]),
        ("web[1:2]:2222", ["web1", "web2"]),
        ("[::1]:2222", ["::1"]),
        ("www[:2]", ["www0", "www1", "www2"]),
    ],
)
def test_host_ranges_expand_like_ansibles(pattern: str, hosts: list[str]) -> None:
    expanded = expand(pattern)
    assert expanded[: len(hosts)] == hosts
    if "rack" not in pattern:
        assert expanded == hosts
    else:
        assert len(expanded) == 6


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("web[01:3]", "same width"),
        ("web[1:]", "no end"),
        ("web[5:1]", "runs backwards"),
        ("web[a:3]", "mixes letters and numbers"),
        ("web[1:2:x]", "step"),
        ("web[1:2", "unclosed"),
        ("web:", "reserved for a port"),
        ("web[0:999999]", "expands to"),
    ],
)
def test_bad_ranges_say_what_to_fix(pattern: str, problem: str) -> None:
    with pytest.raises(InventoryError, match=problem):
        expand(pattern, 4)


def test_a_runner_fleet_in_ini_gives_names_labels_and_groups() -> None:
    text = """
; GitHub Actions runners, provisioned by the runner role
[runners:children]
prod_runners
staging_runners

[prod_runners]
prod-runner-[01:03].dc1.example.com runner_name=prod-[replaced]

[prod_runners:vars]
runner_labels=production,deploy

[staging_runners]
stg-runner-a.example.com runner_name=staging-a runner_labels="['staging']"

[monitoring]
prometheus.example.com
"""
    text = text.replace(" runner_name=prod-[replaced]", "")
    rules = Rules("runner_name", "runner_labels", "runners")
    hosts = read(text, "ini", rules=rules)
    assert [h.name for h in hosts] == [
        "prod-runner-01.dc1.example.com",
        "prod-runner-02.dc1.example.com",
        "prod-runner-03.dc1.example.com",
        "staging-a",
    ]
    assert hosts[0].labels == ("production", "deploy")
    assert hosts[0].groups == ("prod_runners", "runners")
    assert hosts[0].line == 8
    assert hosts[3].labels == ("staging",)
    assert hosts[3].host == "stg-runner-a.example.com"


def test_a_runner_fleet_in_yaml_with_labels_as_lists() -> None:
    text = """
all:
  vars:
    runner_labels: [linux-build]
  children:
    deploy_runners:
      vars:
        runner_labels: [production, deploy]
      hosts:
        prod-[1:2].example.com:
          runner_name: will-be-overridden
        prod-3.example.com:
          runner_name: prod-3
          runner_labels: production, canary
    builders:
      hosts:
        build-1.example.com:
"""
    text = text.replace("          runner_name: will-be-overridden\n", "")
    text = text.replace("prod-[1:2].example.com:", "prod-[1:2].example.com: {}")
    hosts = read(text, "auto", rules=RULES)
    assert [(h.name, h.labels) for h in hosts] == [
        ("prod-1.example.com", ("production", "deploy")),
        ("prod-2.example.com", ("production", "deploy")),
        ("prod-3", ("production", "canary")),
        ("build-1.example.com", ("linux-build",)),
    ]
    assert hosts[2].line == 11


def test_a_plain_list_names_runners_one_a_line() -> None:
    hosts = read("# the fleet\nprod-1\n\nprod-2  # primary\n", "list", rules=RULES)
    assert [(h.name, h.labels, h.line) for h in hosts] == [
        ("prod-1", None, 2),
        ("prod-2", None, 4),
    ]
    # Auto reads a bare list as an INI inventory of ungrouped hosts: the same runners.
    assert [h.name for h in read("prod-1\nprod-2\n", rules=RULES)] == [
        "prod-1",
        "prod-2",
    ]


def test_the_format_is_told_by_extension_then_content() -> None:
    assert detect("x", "hosts.yml") == "yaml"
    assert detect("all:\n  hosts:\n", "hosts.ini") == "ini"
    assert detect("all:\n  hosts:\n    a:\n") == "yaml"
    assert detect("[web]\nweb1\n") == "ini"
    assert detect("web1\nweb2\n") == "ini"
    # Broken YAML still goes to the YAML reader, which names the line.
    assert detect("# fleet\nall:\n  hosts:\n    a:\n   b: 1\n") == "yaml"
    assert detect("web1:2222\n[web]\n") == "ini"


@pytest.mark.parametrize(
    ("text", "fmt", "line", "problem"),
    [
        ("[web]\nweb1 port 22\n", "ini", 2, "expected key=value after host 'web1'"),
        ("[web:vars]\nx=1\n", "ini", 1, "declare it with a [web] section"),
        ("[all:children]\nghosts\n", "ini", 2, "add a [ghosts] section"),
        ("[web:host]\nweb1\n", "ini", 1, "unknown type 'host'"),
        ("[web ]\nweb1\n", "ini", 1, "no spaces inside the brackets"),
        ("[web]\nweb1 x='unclosed\n", "ini", 2, "close the quotes"),
        ("[a:children]\nb\n[b:children]\na\n[a]\n[b]\n", "ini", 4, "inside"),
        ("[web]\nweb[01:3]\n", "ini", 2, "same width"),
        ("all:\n  hosts:\n    a:\n   b: 1\n", "yaml", 4, "not valid YAML"),
        ("all:\n  host:\n    a:\n", "yaml", 2, "unexpected key 'host'"),
        ("all:\n  hosts:\n    - a\n", "yaml", 3, "must be a mapping"),
        ("all:\n  hosts:\n    a: 3\n", "yaml", 3, "must map to its variables"),
        ("all:\n  hosts:\n    1234:\n", "yaml", 3, "quote it"),
        ("- a\n- b\n", "yaml", 1, "maps group names"),
        ("plugin: aws_ec2\n", "yaml", 1, "inventory plugin"),
        ("[web]\na runner_name=x\nb runner_name=x\n", "ini", 3, "give each host"),
        ("[web]\na runner_name='two words'\n", "ini", 2, "not a runner name"),
        ("[web]\na runner_labels=\"{'x': 1}\"\n", "ini", 2, "must be a list"),
        ("[web]\na runner_labels=\"['a b']\"\n", "ini", 2, "not a runner label"),
        ("# nothing\n", "ini", None, "lists no hosts"),
        ("prod 1\n", "list", 1, "one runner name per line"),
        ("", "list", None, "names no runners"),
        ("all: " + "[" * 100_000, "auto", 1, "nesting depth"),
        (
            "all:\n  vars:\n    x: " + "{a: " * 5_000 + "1" + "}" * 5_000,
            "yaml",
            3,
            "nesting depth",
        ),
    ],
)
def test_what_cannot_be_read_names_the_line_and_what_to_fix(
    text: str, fmt: str, line: int | None, problem: str
) -> None:
    with pytest.raises(InventoryError) as caught:
        read(text, fmt, rules=RULES)
    assert problem in caught.value.message
    assert caught.value.line == line


def test_a_missing_runner_group_is_named() -> None:
    with pytest.raises(InventoryError, match="no group 'runners'"):
        read("web1\n", "ini", rules=Rules("runner_name", "runner_labels", "runners"))


def test_group_priority_and_sibling_order_decide_between_equal_depths() -> None:
    text = """[a]
h1
[b]
h1
[a:vars]
v=from_a
[b:vars]
v=from_b
"""
    assert parse_ini(text).host_vars("h1")["v"] == "from_b"
    prioritised = text + "[a:vars]\nansible_group_priority=5\n"
    assert parse_ini(prioritised).host_vars("h1")["v"] == "from_a"
