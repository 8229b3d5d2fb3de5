"""Deploy outcomes per environment (DORA), each figure from a seeded history with exact
values: deployment frequency, lead time from the commit's recorded date, change
failure rate with failed and rolled-back changes, time to restore and "still failing
since"; commit dates recorded through the simulator, rollbacks recorded; the
environment page's figures and charts, the metrics and their query counts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from deploys.commits import resolve
from deploys.dora import DoraCollector, compute
from deploys.models import CommitDate, DeployRun, Environment, Rollback
from deploys.redeploy import rollback
from deploys.templatetags.dora import notes
from githubsim import Simulator
from runners.models import Runner
from tests.factories import REPOSITORY, make_env, pool_runner

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = 86400.0
HOUR = 3600.0


def old_env(name: str = "production", *runners: Runner, **kw: Any) -> Environment:
    """An environment older than the window (a younger one counts fewer days)."""
    kw.setdefault("created_at", NOW - timedelta(days=365))
    return make_env(name, *runners, **kw)


def sha(n: int) -> str:
    return f"{n:040x}"


def deploy(
    env: Environment,
    commit: int,
    days_ago: float,
    state: str = DeployRun.State.SUCCEEDED,
    reason: str = "",
    now: datetime = NOW,
) -> DeployRun:
    """A deploy of commit ``commit`` that finished ``days_ago`` days before ``now``."""
    finished = now - timedelta(days=days_ago)
    return DeployRun.objects.create(
        environment=env,
        ref="main",
        sha=sha(commit) if commit else "",
        state=state,
        reason=reason,
        created_at=finished - timedelta(minutes=10),
        started_at=finished - timedelta(minutes=9),
        finished_at=finished,
    )


def failed(
    env: Environment, commit: int, days_ago: float, reason: str, now: datetime = NOW
) -> DeployRun:
    return deploy(env, commit, days_ago, DeployRun.State.FAILED, reason, now)


def committed(
    commit: int, days_ago: float, repository: str = REPOSITORY, now: datetime = NOW
) -> None:
    CommitDate.objects.create(
        repository=repository,
        sha=sha(commit),
        committed_at=now - timedelta(days=days_ago),
    )


def rolled_back(
    env: Environment, replaced: DeployRun, to: int, days_ago: float, now: datetime = NOW
) -> None:
    run = deploy(env, to, days_ago, now=now)
    Rollback.objects.create(run=run, replaced=replaced)


def seed_failures(env: Environment, base: int = 0, now: datetime = NOW) -> None:
    """Commit 1 deployed; commit 2 fails in a step, is retried and rolled back to 1;
    commit 3 deploys the wrong commit; commit 4 finds no healthy runner, then
    deploys (commits numbered from ``base``)."""
    deploy(env, base + 1, 10, now=now)
    failed(env, base + 2, 8, DeployRun.Reason.DEPLOY_FAILED, now)
    two = deploy(env, base + 2, 8 - 1 / 24, now=now)
    rolled_back(env, two, base + 1, 7, now)
    failed(env, base + 3, 5, DeployRun.Reason.WRONG_SHA, now)
    failed(env, base + 4, 4, DeployRun.Reason.NO_HEALTHY_RUNNER, now)
    deploy(env, base + 4, 3, now=now)


# Figures ------------------------------------------------------------------------------


def test_frequency_counts_changes_not_redeploys_or_deploys_that_never_ran() -> None:
    env = old_env()
    deploy(env, 1, 40)  # before the window
    deploy(env, 1, 20)  # a redeploy of a commit deployed before the window
    deploy(env, 2, 10)
    deploy(env, 2, 9)  # a redeploy
    failed(env, 3, 2, DeployRun.Reason.NO_HEALTHY_RUNNER)
    deploy(env, 3, 2, state=DeployRun.State.CANCELLED)
    deploy(env, 3, 1)
    deploy(old_env("staging"), 4, 1)  # another environment

    figures = compute(env, NOW)

    assert (figures.changes_deployed, figures.deploys, figures.changes) == (2, 4, 2)
    assert figures.per_day == pytest.approx(2 / 30)
    assert len(figures.days) == 31
    by_day = {d.day: (d.succeeded, d.failed, d.not_run) for d in figures.days}
    assert by_day[(NOW - timedelta(days=2)).date()] == (0, 0, 1)
    assert by_day[(NOW - timedelta(days=9)).date()] == (1, 0, 0)
    assert sum(d.succeeded for d in figures.days) == 4


def test_lead_time_runs_from_the_commit_date_to_the_first_good_deploy() -> None:
    env = old_env()
    deploy(env, 1, 10)
    committed(1, 10 + 3 / 24)  # 3 h before its deploy
    deploy(env, 1, 9)  # a redeploy: not a change
    failed(env, 2, 2, DeployRun.Reason.DEPLOY_FAILED)
    deploy(env, 2, 1)
    committed(2, 1 + 1 / 48)  # 30 min before its first good deploy
    deploy(env, 3, 0.5)  # deployed before commit dates were recorded
    committed(3, 5, repository="acme/other")

    figures = compute(env, NOW)

    assert [(lt.sha, lt.seconds) for lt in figures.lead_times] == [
        (sha(1), 3 * HOUR),
        (sha(2), 0.5 * HOUR),
    ]
    assert figures.lead_time_median == 1.75 * HOUR
    assert figures.lead_time_unknown == 1
    assert "Lead time unknown for 1 deploy made before commit dates were recorded." in (
        notes(figures)
    )


def test_failure_rate_counts_failed_and_rolled_back_changes() -> None:
    env = old_env()
    seed_failures(env)

    figures = compute(env, NOW)

    # Changes: 1, 2 failed, 2 retried, 3 wrong commit, 4; the rollback to 1 and
    # the run that found no runner are not changes.
    assert figures.changes == 5
    assert [(f.sha, f.rolled_back) for f in figures.failures] == [
        (sha(2), False),
        (sha(2), True),
        (sha(3), False),
    ]
    assert figures.change_failure_rate == 0.6


def test_time_to_restore_runs_to_the_next_deploy_not_rolled_back() -> None:
    env = old_env()
    seed_failures(env)

    figures = compute(env, NOW)

    # 2 failed: the rollback restored it a day later; 2 went live an hour after and
    # was rolled back (23 h); 3 failed two days before 4 deployed.
    assert [f.seconds for f in figures.failures] == [DAY, 23 * HOUR, 2 * DAY]
    assert figures.restore_median == DAY
    assert figures.failing_since is None
    assert "No change failed in 30 days." not in notes(figures)


def test_a_failure_no_good_deploy_followed_is_still_failing() -> None:
    env = old_env()
    deploy(env, 1, 3)
    bad = deploy(env, 2, 2)
    rolled_back(env, bad, 1, 1.5)
    # The rollback is itself followed by a change that failed.
    failed(env, 3, 1, DeployRun.Reason.DEPLOY_FAILED)

    figures = compute(env, NOW)

    assert [f.seconds for f in figures.failures] == [0.5 * DAY, None]
    assert figures.failing_since == NOW - timedelta(days=1)
    assert figures.restore_median == 0.5 * DAY
    assert (
        "Still failing since 2026-11-29 12:00 UTC: no good deploy has followed that "
        "failed change yet." in notes(figures)
    )


def test_a_quiet_environment_says_so() -> None:
    env = old_env()
    deploy(env, 1, 40)
    deploy(env, 1, 2)  # a redeploy

    figures = compute(env, NOW)

    assert (figures.changes, figures.per_day, figures.lead_time_median) == (0, 0, None)
    assert figures.change_failure_rate is None
    assert notes(figures) == [
        "No change reached a runner in 30 days: nothing to measure."
    ]
    deploy(env, 2, 1)
    assert "No change failed in 30 days." in notes(compute(env, NOW))


def test_a_young_environment_counts_the_days_it_existed() -> None:
    env = old_env(created_at=NOW - timedelta(days=4))
    for commit in range(1, 7):
        deploy(env, commit, commit / 2)

    figures = compute(env, NOW)

    assert (figures.observed_days, figures.per_day) == (4, 6 / 4)
    assert notes(figures)[0] == (
        "Only 4 of 30 days of history: the environment was added since; deployment "
        "frequency is per day since then."
    )


def test_the_window_follows_the_setting(settings: Any) -> None:
    settings.DORA_WINDOW_DAYS = 7
    env = old_env()
    deploy(env, 1, 10)
    deploy(env, 2, 6)

    figures = compute(env, NOW)

    assert (figures.window_days, figures.changes_deployed, len(figures.days)) == (
        7,
        1,
        8,
    )
    assert figures.per_day == 1 / 7


def test_compute_makes_three_queries_whatever_the_history(
    django_assert_num_queries: Any,
) -> None:
    env = old_env()
    with django_assert_num_queries(3):
        compute(env, NOW)
    for offset in range(10):
        seed_failures(old_env(f"env-{offset}"))
        seed_failures(env, base=10 * offset)
    with django_assert_num_queries(3):
        figures = compute(env, NOW)
    assert figures.changes == 50


# Recording: commit dates and rollbacks ------------------------------------------------


def test_resolving_a_ref_records_the_commits_date_from_github(
    github: Simulator,
) -> None:
    env = old_env()
    head = github.push("main")

    assert resolve(env, "main") == head
    assert resolve(env, "", head) == head  # a second time: still one row

    recorded = CommitDate.objects.get()
    made = github.state.commit(REPOSITORY, head).created_at
    assert (recorded.repository, recorded.sha) == (REPOSITORY, head)
    # GitHub's dates have whole seconds.
    assert int(recorded.committed_at.timestamp()) == int(made)


def test_rollback_records_the_deploy_it_replaces(github: Simulator, sre: User) -> None:
    env = old_env("production", pool_runner("p1"))
    old, new = github.sha_of("main"), github.push("main")
    DeployRun.objects.create(
        environment=env, ref="main", sha=old, state="succeeded", finished_at=NOW
    )
    current = DeployRun.objects.create(
        environment=env,
        ref="main",
        sha=new,
        state="succeeded",
        finished_at=NOW + timedelta(hours=1),
    )

    result = rollback(sre, env)

    assert result.created
    assert result.run.sha == old
    assert Rollback.objects.get().replaced == current
    assert Rollback.objects.get().run == result.run


def test_a_rollback_that_cannot_be_recorded_leaves_no_deploy(
    github: Simulator, sre: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollback row is written with the run: a deploy never runs uncounted."""
    env = old_env("production", pool_runner("p1"))
    old, new = github.sha_of("main"), github.push("main")
    for sha_, hours in ((old, 0), (new, 1)):
        DeployRun.objects.create(
            environment=env,
            ref="main",
            sha=sha_,
            state="succeeded",
            finished_at=NOW + timedelta(hours=hours),
        )

    def fail(**kwargs: Any) -> None:
        raise IntegrityError("the database went away")

    monkeypatch.setattr(Rollback.objects, "create", fail)
    with pytest.raises(IntegrityError):
        rollback(sre, env)

    assert DeployRun.objects.count() == 2
    assert not Rollback.objects.exists()


# The environment page -----------------------------------------------------------------


def test_the_environment_page_shows_the_figures_and_the_charts(
    viewer_client: Client, time_machine: Any
) -> None:
    time_machine.move_to(NOW, tick=False)
    env = old_env()
    seed_failures(env)
    committed(1, 10 + 2 / 24)
    committed(4, 4)

    html = viewer_client.get("/deploys/environments/production/").content.decode()

    figures = re.sub(
        r"\s+", " ", html.split('id="dora-frequency"')[1].split("</dl>")[0]
    )
    assert "0.10 / day" in figures  # 3 changes deployed in 30 days
    assert "13 h" in figures  # the median of 2 h and 1 d
    assert "60 %" in figures
    assert "3 of 5 changes failed or rolled back" in figures
    assert "1 d<" in figures  # the median restore
    # Every mark carries its details.
    # Seven bars on six days with deploys (one day has two outcomes stacked).
    assert len(re.findall(r'class="mark bar-(succeeded|failed|not_run)"', html)) == 7
    assert "2026-11-26: 1 failed before reaching a runner" in html
    assert html.count('class="mark dot"') == 2
    assert "after its commit (deploy #" in html
    assert html.count('class="mark bar-restored"') == 3
    assert "was rolled back, 2026-11-22 13:00 UTC; restored by deploy #" in html
    assert 'id="dora-failure-table"' in html
    assert "Lead time unknown for 1 deploy made before" in html


def test_an_environment_without_history_says_so(viewer_client: Client) -> None:
    old_env()
    html = viewer_client.get("/deploys/environments/production/").content.decode()
    assert "No change reached a runner in 30 days: nothing to measure." in html
    assert "nothing failed" in html


# Metrics ------------------------------------------------------------------------------


def dora_samples(client: Client) -> dict[tuple[str, str], float]:
    text = client.get("/metrics").content.decode()
    families = list(text_string_to_metric_families(text))
    up = next(f for f in families if f.name == "controlplane_metrics_collector_up")
    assert {"collector": "dora"} in [s.labels for s in up.samples if s.value == 1]
    return {
        (sample.name, sample.labels["environment"]): sample.value
        for family in families
        if family.name.startswith("controlplane_dora_")
        for sample in family.samples
    }


def test_the_figures_are_exported_per_environment(
    client: Client, time_machine: Any
) -> None:
    time_machine.move_to(NOW, tick=False)
    seed_failures(old_env())
    committed(1, 10 + 2 / 24)
    failed(old_env("staging"), 9, 1, DeployRun.Reason.DEPLOY_FAILED)
    old_env("empty")

    samples = dora_samples(client)

    assert samples == {
        ("controlplane_dora_deploys_per_day", "production"): pytest.approx(0.1),
        ("controlplane_dora_lead_time_seconds", "production"): 2 * HOUR,
        ("controlplane_dora_change_failure_ratio", "production"): 0.6,
        ("controlplane_dora_time_to_restore_seconds", "production"): DAY,
        ("controlplane_dora_changes", "production"): 5,
        ("controlplane_dora_deploys_per_day", "staging"): 0,
        ("controlplane_dora_change_failure_ratio", "staging"): 1,
        ("controlplane_dora_changes", "staging"): 1,
        ("controlplane_dora_failing_since_timestamp_seconds", "staging"): (
            NOW - timedelta(days=1)
        ).timestamp(),
        ("controlplane_dora_deploys_per_day", "empty"): 0,
        ("controlplane_dora_changes", "empty"): 0,
    }


def test_a_scrape_recomputes_only_the_environments_whose_history_changed(
    django_assert_num_queries: Any,
) -> None:
    for index in range(2):
        seed_failures(old_env(f"small-{index}"))
    # The history marks (three), the environments, then three per environment.
    with django_assert_num_queries(3 + 1 + 3 * 2):
        list(DoraCollector().collect())
    with django_assert_num_queries(3 + 1):
        list(DoraCollector().collect())
    for index in range(4):
        seed_failures(old_env(f"large-{index}"))
    with django_assert_num_queries(3 + 1 + 3 * 4):
        families = list(DoraCollector().collect())
    changes = next(f for f in families if f.name == "controlplane_dora_changes")
    assert [s.value for s in changes.samples] == [5] * 6


def changes_of(name: str) -> float:
    families = list(DoraCollector().collect())
    changes = next(f for f in families if f.name == "controlplane_dora_changes")
    return next(s.value for s in changes.samples if s.labels["environment"] == name)


def test_a_scrape_sees_a_finished_deploy_a_rollback_and_the_sliding_window(
    time_machine: Any,
) -> None:
    time_machine.move_to(NOW, tick=False)
    env = old_env()
    seed_failures(env)
    assert changes_of("production") == 5

    deploy(env, 77, 0.1)  # a new commit deployed
    assert changes_of("production") == 6
    failure_rate = next(
        s.value
        for f in DoraCollector().collect()
        if f.name == "controlplane_dora_change_failure_ratio"
        for s in f.samples
    )
    replaced = DeployRun.objects.get(sha=sha(77))
    Rollback.objects.create(
        run=DeployRun.objects.create(environment=env, ref="main", sha=sha(1)),
        replaced=replaced,
    )
    assert (
        next(
            s.value
            for f in DoraCollector().collect()
            if f.name == "controlplane_dora_change_failure_ratio"
            for s in f.samples
        )
        > failure_rate
    )

    # Nothing new, but the oldest changes leave the window as days pass.
    time_machine.move_to(NOW + timedelta(days=25), tick=False)
    assert changes_of("production") < 6
