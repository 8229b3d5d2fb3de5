"""Inventory drift against runners synced from the GitHub simulator over HTTP, and
the three ways an inventory arrives: the API, the admin upload and the file path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from controlplane.github import GitHubGateway, gateway_from_settings
from controlplane.models import AuditEvent
from githubsim import Simulator
from inventory import drift
from inventory.models import ExpectedRunner, InventoryLoad
from inventory.tasks import watch_inventory_file
from runners import sync
from runners.models import Runner
from tests.conftest import logged_in
from tests.test_alert_rules import alerts
from tests.test_runner_metrics import scrape

pytestmark = [pytest.mark.django_db, pytest.mark.sim(seed=7)]

TOKEN = "ghp_inventory_test_token"  # noqa: S105
FLEET_INI = """# The deploy runners, as the provisioning playbook sees them
[deploy_runners]
prod-[1:3] runner_labels=production,deploy

[builders]
build-1 runner_labels="['builder']"

[runners:children]
deploy_runners
builders
"""


@pytest.fixture
def gw(sim: Simulator) -> GitHubGateway:
    return gateway_from_settings(base_url=sim.url, token=TOKEN, max_retries=0)


def register_fleet(sim: Simulator) -> None:
    """prod-1 as the inventory says; prod-2 without its deploy label; build-1 with
    a label too many; rogue-1 unknown to the inventory; prod-3 never registered."""
    sim.add_runner("prod-1", ["production", "deploy"])
    sim.add_runner("prod-2", ["production"])
    sim.add_runner("build-1", ["builder", "gpu"])
    sim.add_runner("rogue-1", ["production"])


def post_inventory(client: Client, content: Any, **extra: Any) -> Any:
    return client.post(
        "/api/v1/inventory/",
        {"content": content, **extra},
        content_type="application/json",
    )


def test_drift_names_rogue_missing_and_label_differences_of_the_synced_fleet(
    sim: Simulator, gw: GitHubGateway, admin_client_: Client
) -> None:
    register_fleet(sim)
    sync.sync_fleet(gw=gw)
    assert post_inventory(admin_client_, FLEET_INI).status_code == 201

    found = drift.compute()
    assert found is not None
    assert [r.name for r in found.rogue] == ["rogue-1"]
    assert [(m.name, m.status) for m in found.missing] == [
        ("prod-3", "never_registered")
    ]
    by_name = {d.name: d for d in found.labels}
    assert sorted(by_name) == ["build-1", "prod-2"]
    assert (by_name["prod-2"].absent, by_name["prod-2"].unexpected) == (["deploy"], [])
    assert (by_name["build-1"].absent, by_name["build-1"].unexpected) == ([], ["gpu"])

    # GitHub drops prod-1: the next sync marks it removed, and it is missing.
    sim.remove_runner("prod-1")
    sync.sync_fleet(gw=gw)
    found = drift.compute()
    assert found is not None
    assert [(m.name, m.status) for m in found.missing] == [
        ("prod-1", "removed"),
        ("prod-3", "never_registered"),
    ]
    assert found.counts() == {"rogue": 1, "missing": 2, "labels_differ": 2}


def test_labels_compare_without_case_and_ignore_githubs_defaults() -> None:
    assert drift.label_drift("a", "a", ["Deploy"], ["self-hosted", "deploy"]) is None
    assert (
        drift.label_drift("a", "a", ["deploy"], ["Linux", "X64", "a", "deploy"]) is None
    )
    listed = drift.label_drift("a", "a", ["self-hosted", "gpu"], ["deploy"])
    assert listed is not None
    assert (listed.absent, listed.unexpected) == (["self-hosted", "gpu"], ["deploy"])


@pytest.mark.parametrize("fleet", [10, 200])
def test_drift_costs_three_queries_whatever_the_fleet_size(
    fleet: int, admin_user: User, django_assert_num_queries: Any
) -> None:
    from inventory.loading import load_text

    Runner.objects.bulk_create(
        Runner(name=f"r-{i}", github_id=i, labels=["self-hosted", f"r-{i}"])
        for i in range(fleet)
    )
    load_text(
        "\n".join(f"r-{i}" for i in range(0, fleet + 5, 2)),
        "list",
        source=InventoryLoad.Source.API,
        actor=admin_user,
    )
    with django_assert_num_queries(3):
        found = drift.compute()
    assert found is not None
    assert len(found.rogue) == fleet // 2
    assert len(found.missing) == 3 - (fleet % 2)


def test_a_bad_inventory_is_a_400_naming_the_line_and_replaces_nothing(
    admin_client_: Client,
) -> None:
    assert post_inventory(admin_client_, "prod-1\nprod-2\n").status_code == 201
    before = list(ExpectedRunner.objects.values_list("name", flat=True))
    loads = InventoryLoad.objects.count()

    response = post_inventory(admin_client_, "[web]\nweb1\nweb2 port 22\n")
    assert response.status_code == 400
    body = response.json()
    assert body["line"] == 3
    assert "expected key=value after host 'web2'" in body["content"][0]
    assert body["content"][0].startswith("line 3: ")
    assert list(ExpectedRunner.objects.values_list("name", flat=True)) == before
    assert InventoryLoad.objects.count() == loads
    refused = AuditEvent.objects.get(action="inventory.load", outcome="failure")
    assert refused.detail["error"].startswith("line 3: expected key=value")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "content"),
        ({"content": ["prod-1"]}, "content"),
        ({"content": "prod-1", "format": "toml"}, "format"),
        ({"content": "x" * 2_000_001}, "content"),
        ({"content": "all:\n  hosts:\n    a:\n   b: 1\n", "format": "yaml"}, "line"),
    ],
)
def test_invalid_bodies_are_400s_saying_what_to_fix(
    admin_client_: Client, body: dict[str, Any], field: str
) -> None:
    response = admin_client_.post(
        "/api/v1/inventory/", body, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not InventoryLoad.objects.exists()


def test_only_admins_load_and_viewers_read_the_drift(
    sre: User, viewer: User, admin_user: User, admin_client_: Client
) -> None:
    assert post_inventory(logged_in(sre), "prod-1\n").status_code == 403
    assert post_inventory(logged_in(viewer), "prod-1\n").status_code == 403
    assert not InventoryLoad.objects.exists()
    empty = logged_in(viewer).get("/api/v1/inventory/").json()
    assert empty == {
        "inventory": None,
        "counts": {},
        "rogue": [],
        "missing": [],
        "labels_differ": [],
    }

    response = post_inventory(admin_client_, "prod-1\n", filename="fleet.txt")
    assert response.status_code == 201
    report = logged_in(viewer).get("/api/v1/inventory/").json()
    assert report["inventory"]["source"] == "api"
    assert report["inventory"]["expected"] == 1
    assert report["missing"][0]["runner"] == "prod-1"
    event = AuditEvent.objects.get(action="inventory.load")
    assert event.actor_name == admin_user.username
    assert event.detail["hosts"] == 1


def test_an_admin_uploads_an_inventory_in_the_admin(admin_client_: Client) -> None:
    page = admin_client_.get("/admin/inventory/inventoryload/add/")
    assert page.status_code == 200
    upload = SimpleUploadedFile("fleet.ini", FLEET_INI.encode())
    response = admin_client_.post(
        "/admin/inventory/inventoryload/add/", {"file": upload, "format": "auto"}
    )
    assert response.status_code == 302
    load = InventoryLoad.objects.in_force()
    assert load is not None
    assert (load.source, load.fmt, load.hosts, load.filename) == (
        "upload",
        "ini",
        4,
        "fleet.ini",
    )
    assert InventoryLoad.objects.count() == 1
    for url in (
        "/admin/inventory/inventoryload/",
        f"/admin/inventory/inventoryload/{load.pk}/change/",
        "/admin/inventory/expectedrunner/",
    ):
        assert admin_client_.get(url).status_code == 200, url

    bad = SimpleUploadedFile("fleet.yml", b"all:\n  hosts:\n    - a\n")
    response = admin_client_.post(
        "/admin/inventory/inventoryload/add/", {"file": bad, "format": "auto"}
    )
    assert response.status_code == 200
    assert "line 3: &#x27;hosts&#x27; of group &#x27;all&#x27; must be a mapping" in (
        response.content.decode()
    )
    assert InventoryLoad.objects.in_force() == load
    assert ExpectedRunner.objects.count() == 4


def test_the_file_is_loaded_when_it_changes_and_a_bad_one_is_refused_once(
    tmp_path: Path, settings: Any, client: Client
) -> None:
    path = tmp_path / "hosts.yml"
    settings.INVENTORY_PATH = str(path)
    path.write_text("all:\n  hosts:\n    prod-1:\n    prod-2:\n")
    watch_inventory_file()
    first = InventoryLoad.objects.in_force()
    assert first is not None
    assert (first.source, first.fmt, first.hosts) == ("file", "yaml", 2)
    watch_inventory_file()  # unchanged: nothing to do
    assert InventoryLoad.objects.count() == 1

    path.write_text("all:\n  hosts:\n    prod-1:\n  children: [x]\n")
    watch_inventory_file()
    watch_inventory_file()
    refused = InventoryLoad.objects.get(accepted=False)
    assert refused.error_line == 4
    assert "'children' of group 'all' must be a mapping" in refused.error
    assert InventoryLoad.objects.in_force() == first
    assert scrape(client)["controlplane_inventory_file_error"] == 1
    assert (
        AuditEvent.objects.filter(action="inventory.load", outcome="failure").count()
        == 1
    )

    path.write_text("all:\n  hosts:\n    prod-1:\n")
    watch_inventory_file()
    assert InventoryLoad.objects.in_force().hosts == 1  # type: ignore[union-attr]
    assert list(ExpectedRunner.objects.values_list("name", flat=True)) == ["prod-1"]
    assert scrape(client)["controlplane_inventory_file_error"] == 0


def test_a_missing_file_is_refused_and_no_path_means_no_watch(
    tmp_path: Path, settings: Any
) -> None:
    settings.INVENTORY_PATH = ""
    watch_inventory_file()
    assert not InventoryLoad.objects.exists()
    settings.INVENTORY_PATH = str(tmp_path / "absent.ini")
    watch_inventory_file()
    refused = InventoryLoad.objects.get()
    assert not refused.accepted
    assert "cannot read the file" in refused.error


def test_the_file_watch_reports_the_success_the_stale_tasks_alert_watches(
    settings: Any, client: Client
) -> None:
    """Even with no INVENTORY_PATH the watch succeeds every minute, so
    ControlPlaneTaskStale names it only when its worker or beat stopped."""
    settings.INVENTORY_PATH = ""
    watch_inventory_file()

    series = 'controlplane_task_last_success_timestamp_seconds{task="inventory_file"}'
    assert scrape(client)[series] > 0
    rules = {rule["alert"]: rule["expr"] for rule in alerts()}
    assert "inventory_file" in rules["ControlPlaneTaskStale"]


def test_metrics_and_the_board_report_drift_by_kind(
    sim: Simulator, gw: GitHubGateway, admin_client_: Client, viewer: User
) -> None:
    viewer_client = logged_in(viewer)
    assert scrape(viewer_client)["controlplane_inventory_loaded"] == 0
    register_fleet(sim)
    sync.sync_fleet(gw=gw)
    post_inventory(admin_client_, FLEET_INI)
    samples = scrape(viewer_client)
    assert samples["controlplane_inventory_loaded"] == 1
    assert samples["controlplane_inventory_expected_runners"] == 4
    assert samples['controlplane_inventory_drift_runners{kind="rogue"}'] == 1
    assert samples['controlplane_inventory_drift_runners{kind="missing"}'] == 1
    assert samples['controlplane_inventory_drift_runners{kind="labels_differ"}'] == 2

    home = viewer_client.get("/").content.decode()
    assert 'id="board-inventory"' in home
    for rule in ("InventoryRogueRunners", "InventoryMissingRunners"):
        assert f'data-rule="{rule}"' in home
    assert "/runbooks/inventory-labels-differ/" in home


def test_the_page_names_each_drifting_runner_in_bounded_queries(
    sim: Simulator,
    gw: GitHubGateway,
    admin_client_: Client,
    viewer: User,
    django_assert_max_num_queries: Any,
) -> None:
    register_fleet(sim)
    sync.sync_fleet(gw=gw)
    post_inventory(admin_client_, FLEET_INI)
    viewer_client = logged_in(viewer)
    with django_assert_max_num_queries(12):
        page = viewer_client.get("/inventory/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-rogue="rogue-1"' in html
    assert 'data-missing="prod-3"' in html
    assert 'data-labels="prod-2"' in html
    assert 'data-labels="build-1"' in html
    assert "more:" not in html
    assert "Load an inventory" not in html  # for admins only
    assert "Load an inventory" in admin_client_.get("/inventory/").content.decode()


def test_the_page_shows_a_bounded_number_of_rows_per_kind(
    admin_user: User, viewer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inventory import views
    from inventory.loading import load_text

    monkeypatch.setattr(views, "SHOWN", 3)
    load_text(
        "\n".join(f"gone-{i}" for i in range(5)),
        "list",
        source=InventoryLoad.Source.API,
        actor=admin_user,
    )
    html = logged_in(viewer).get("/inventory/").content.decode()
    assert html.count("data-missing=") == 3
    assert "and 2 more: " in html
