"""The drift's counts in SQL (``inventory.drift.summarize``), which the home board
and /metrics read on every refresh and scrape: equal to the full computation's on
every kind of drift, following every writer of the registry and the inventory at
once, in a fixed number of queries."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from githubsim import Simulator
from inventory import drift
from inventory.board import inventory_panel
from inventory.loading import load_text
from inventory.metrics import InventoryCollector
from inventory.models import InventoryLoad
from runners import retention, sync
from runners.label_sets import key_of
from runners.models import Runner
from tests.factories import make_runner

pytestmark = pytest.mark.django_db

INVENTORY = """[runners]
rogue-free runner_labels=deploy
absent-1 runner_labels=deploy,gpu
unexpected-1 runner_labels=deploy
cased-1 runner_labels=DEPLOY,Self-Hosted,LINUX,CASED-1
defaults-1 runner_labels=deploy
listed-default-1 runner_labels=deploy,self-hosted,arm64
name-listed-1 runner_labels=deploy,name-listed-1
unchecked-1
never-1 runner_labels=deploy
removed-1 runner_labels=deploy
unlinked-1 runner_labels=deploy
"""


def load(text: str, actor: Any = "tests") -> InventoryLoad:
    return load_text(text, "ini", source=InventoryLoad.Source.API, actor=actor)


def registered(name: str, labels: list[str], **kw: Any) -> Runner:
    kw.setdefault("github_id", Runner.objects.count() + 1)
    return make_runner(name, labels=labels, **kw)


def drift_fleet() -> None:
    """Every kind of drift the drift page names, and matches it must not count."""
    defaults = ["self-hosted", "Linux", "X64"]
    registered("rogue-free", [*defaults, "deploy"])
    registered("absent-1", [*defaults, "deploy"])  # gpu absent
    registered("unexpected-1", [*defaults, "deploy", "gpu"])  # gpu unexpected
    registered("cased-1", ["self-hosted", "linux", "Deploy", "cased-1"])  # matches
    registered("defaults-1", [*defaults, "defaults-1", "deploy", "Deploy"])  # matches
    registered("listed-default-1", [*defaults, "deploy"])  # arm64 absent
    registered("name-listed-1", [*defaults, "deploy"])  # its name label absent
    registered("unchecked-1", ["anything"])  # no labels declared: not checked
    registered("removed-1", [*defaults, "deploy"], removed_at=timezone.now())
    make_runner("unlinked-1", labels=[*defaults, "deploy"])  # GitHub never listed it
    registered("rogue-1", [*defaults, "deploy"])
    registered("rogue-gone", ["deploy"], removed_at=timezone.now())  # not rogue
    load(INVENTORY)


def counts() -> dict[str, int]:
    summary = drift.summarize()
    assert summary is not None
    full = drift.compute()
    assert full is not None
    assert summary.counts == full.counts()
    assert summary.expected == full.expected
    return summary.counts


def test_counts_equal_the_full_computation_on_every_kind_of_drift() -> None:
    drift_fleet()

    assert counts() == {"rogue": 1, "missing": 3, "labels_differ": 4}
    full = drift.compute()
    assert full is not None
    assert sorted(d.name for d in full.labels) == [
        "absent-1",
        "listed-default-1",
        "name-listed-1",
        "unexpected-1",
    ]
    assert sorted((m.name, m.status) for m in full.missing) == [
        ("never-1", "never_registered"),
        ("removed-1", "removed"),
        ("unlinked-1", "not_in_github"),
    ]


def test_no_inventory_means_no_counts() -> None:
    registered("rogue-1", ["deploy"])
    assert drift.summarize() is None


def test_label_sets_agree_with_label_drift_on_random_labels() -> None:
    """The SQL comparison (equal keys, the expected default bits among the
    runner's) says "differ" exactly when ``label_drift`` finds a difference."""
    rng = random.Random(7)
    pool = ["self-hosted", "Self-Hosted", "linux", "X64", "arm64", "deploy", "Deploy"]
    pool += ["gpu", "GPU", "r-1", "R-1", "macos", "x86"]
    for _ in range(5000):
        expected = rng.sample(pool, rng.randint(0, 5))
        actual = rng.sample(pool, rng.randint(0, 6))
        want_key, want_bits = key_of("r-1", expected)
        have_key, have_bits = key_of("r-1", actual)
        same = want_key == have_key and have_bits & want_bits == want_bits
        found = drift.label_drift("r-1", "r-1", expected, actual)
        assert same is (found is None), (expected, actual)


def test_random_fleets_count_as_the_full_computation() -> None:
    rng = random.Random(11)
    pool = ["self-hosted", "Linux", "x64", "ARM64", "deploy", "Deploy", "gpu"]
    lines = ["[runners]"]
    for i in range(60):
        name = f"r-{i}"
        labels = rng.sample([*pool, name, name.upper()], rng.randint(0, 5))
        if rng.random() < 0.8:
            registered(
                name,
                labels,
                removed_at=timezone.now() if rng.random() < 0.1 else None,
            )
        if rng.random() < 0.8:
            declared = rng.sample([*pool, name.upper()], rng.randint(0, 4))
            lines.append(
                f"{name} runner_labels={','.join(declared)}"
                if declared and rng.random() < 0.9
                else name
            )
    load("\n".join(lines) + "\n")

    assert sum(counts().values()) > 0


def test_counts_follow_saves_bulk_writes_deletes_and_new_inventories(
    admin_user: User,
) -> None:
    drift_fleet()
    assert counts() == {"rogue": 1, "missing": 3, "labels_differ": 4}

    absent = Runner.objects.get(name="absent-1")
    absent.labels = [*absent.labels, "GPU"]
    absent.save(update_fields=["labels"])
    assert counts()["labels_differ"] == 3

    named, unexpected = Runner.objects.filter(
        name__in=["name-listed-1", "unexpected-1"]
    ).order_by("name")
    named.labels = ["self-hosted", "NAME-LISTED-1", "deploy"]
    unexpected.labels = ["deploy"]
    Runner.objects.bulk_update([named, unexpected], ["labels"])
    assert counts()["labels_differ"] == 1

    renamed = Runner.objects.get(name="rogue-1")
    renamed.name = "never-1"
    renamed.save()
    assert counts() == {"rogue": 0, "missing": 2, "labels_differ": 1}

    Runner.objects.filter(name="removed-1").update(removed_at=None)
    Runner.objects.filter(name="unlinked-1").update(github_id=999)
    assert counts()["missing"] == 0

    Runner.objects.filter(name="never-1").delete()
    Runner.objects.bulk_create(
        [Runner(name="bulk-1", github_id=1000, labels=["Deploy", "gpu"])]
    )
    assert counts() == {"rogue": 1, "missing": 1, "labels_differ": 1}

    load("bulk-1 runner_labels=deploy,GPU\nextra-1\n", actor=admin_user)
    assert counts() == {"rogue": 10, "missing": 1, "labels_differ": 0}


def test_update_refuses_labels_it_cannot_key_per_row() -> None:
    registered("r-1", ["deploy"])
    with pytest.raises(TypeError, match="save\\(\\) each row"):
        Runner.objects.filter(name="r-1").update(labels=["gpu"])


def test_counts_follow_an_admin_edit_of_labels(admin_client: Client) -> None:
    runner = registered("prod-1", ["self-hosted", "deploy"])
    load("prod-1 runner_labels=deploy,gpu\n")
    assert counts()["labels_differ"] == 1

    response = admin_client.post(
        f"/admin/runners/runner/{runner.pk}/change/",
        {
            "name": "prod-1",
            "labels": '["self-hosted", "deploy", "GPU"]',
            "os": "",
            "host": "",
            "exporter_url": "",
        },
    )

    assert response.status_code == 302
    assert counts()["labels_differ"] == 0


@pytest.mark.sim(connect=True, seed=5)
def test_counts_follow_the_sync_and_a_retention_removal(
    sim: Simulator, sre: User
) -> None:
    sim.add_runner("prod-1", ["deploy"])
    sim.add_runner("prod-2", ["deploy"])
    sim.add_runner("rogue-1", ["deploy"])
    sync.sync_fleet()
    load("prod-1 runner_labels=deploy\nprod-2 runner_labels=deploy\nprod-3\n")
    assert counts() == {"rogue": 1, "missing": 1, "labels_differ": 0}

    # GitHub: prod-1's labels change, rogue-1 goes, prod-3 registers.
    sim.set_runner_labels("prod-1", ["Deploy", "gpu"])
    sim.remove_runner("rogue-1")
    sim.add_runner("prod-3")
    sync.sync_fleet()
    assert counts() == {"rogue": 0, "missing": 0, "labels_differ": 1}

    # An SRE removes prod-2, offline for days, from GitHub and the registry.
    Runner.objects.filter(name="prod-2").update(
        github_status="offline", offline_since=timezone.now() - timedelta(days=13)
    )
    retention.remove(Runner.objects.get(name="prod-2"), sre, timezone.now())
    assert counts() == {"rogue": 0, "missing": 1, "labels_differ": 1}


@pytest.mark.parametrize("fleet", [10, 300])
def test_the_panel_and_the_collector_cost_the_same_queries_at_any_size(
    fleet: int, settings: Any, tmp_path: Any, django_assert_num_queries: Any
) -> None:
    for i in range(fleet):
        registered(f"r-{i}", ["self-hosted", "deploy", "gpu" if i % 3 else "x"])
    load("\n".join(f"r-{i} runner_labels=deploy,gpu" for i in range(0, fleet + 6, 2)))
    now = timezone.now()

    with django_assert_num_queries(2):
        summary = drift.summarize()
    assert summary is not None
    with django_assert_num_queries(2):
        panel = inventory_panel(now)
    with django_assert_num_queries(2):
        families = {f.name: f for f in InventoryCollector().collect()}
    settings.INVENTORY_PATH = str(tmp_path / "inventory.ini")
    # The file's latest load, when a file is watched.
    with django_assert_num_queries(3):
        inventory_panel(now)
    with django_assert_num_queries(3):
        list(InventoryCollector().collect())

    assert summary.counts == counts()
    assert [count for _, _, count in panel.context["kinds"]] == list(
        summary.counts.values()
    )
    by_kind = {
        s.labels["kind"]: s.value
        for s in families["controlplane_inventory_drift_runners"].samples
    }
    assert by_kind == summary.counts


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_migrations_fill_the_label_sets_of_existing_rows() -> None:
    after = list(MigrationExecutor(connection).loader.graph.leaf_nodes())
    before = [
        ("runners", "0011_runner_canary"),
        ("inventory", "0001_intended_inventory"),
    ]
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(before)
        old = MigrationExecutor(connection).loader.project_state(before).apps
        old.get_model("runners", "Runner").objects.create(
            name="prod-1", github_id=1, labels=["self-hosted", "Deploy", "gpu"]
        )
        loaded = old.get_model("inventory", "InventoryLoad").objects.create(
            source="api", loaded_at=timezone.now(), fmt="list", digest="x", hosts=1
        )
        old.get_model("inventory", "ExpectedRunner").objects.create(
            load=loaded, name="prod-1", host="prod-1", labels=["deploy", "GPU"]
        )
    finally:
        MigrationExecutor(connection).migrate(after)

    assert Runner.objects.get().label_key == '["deploy", "gpu"]'
    assert counts() == {"rogue": 0, "missing": 0, "labels_differ": 0}
