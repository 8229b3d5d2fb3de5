"""Leadership leases: acquire, renew, release, take over after expiry, one holder."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.db.models.functions import Now

from controlplane.models import Lease

SECONDS = 15


def expire(name: str = "beat") -> None:
    """The holder stopped renewing and the lease ran out."""
    Lease.objects.filter(name=name).update(expires_at=Now())


@pytest.mark.django_db
def test_the_first_claimant_creates_and_holds_the_lease() -> None:
    assert Lease.objects.acquire("beat", "host-a:1", seconds=SECONDS)

    lease = Lease.objects.get(name="beat")
    assert lease.holder == "host-a:1"
    assert lease.expires_at > lease.acquired_at
    assert Lease.objects.holder_of("beat") == "host-a:1"


@pytest.mark.django_db
def test_a_held_lease_cannot_be_taken_or_renewed_by_another() -> None:
    Lease.objects.acquire("beat", "host-a:1", seconds=SECONDS)

    assert not Lease.objects.acquire("beat", "host-b:2", seconds=SECONDS)
    assert not Lease.objects.renew("beat", "host-b:2", seconds=SECONDS)
    assert Lease.objects.holder_of("beat") == "host-a:1"


@pytest.mark.django_db
def test_the_holder_renews_its_lease_further_into_the_future() -> None:
    Lease.objects.acquire("beat", "host-a:1", seconds=SECONDS)
    before = Lease.objects.get(name="beat")

    assert Lease.objects.renew("beat", "host-a:1", seconds=SECONDS * 2)

    after = Lease.objects.get(name="beat")
    assert after.expires_at > before.expires_at
    assert after.acquired_at == before.acquired_at
    assert after.holder == "host-a:1"


@pytest.mark.django_db
def test_an_expired_lease_goes_to_the_next_claimant_and_the_old_holder_cannot_renew() -> (
    None
):
    Lease.objects.acquire("beat", "host-a:1", seconds=SECONDS)
    expire()
    assert Lease.objects.holder_of("beat") is None

    assert Lease.objects.acquire("beat", "host-b:2", seconds=SECONDS)

    assert not Lease.objects.renew("beat", "host-a:1", seconds=SECONDS)
    assert Lease.objects.holder_of("beat") == "host-b:2"


@pytest.mark.django_db
def test_an_expired_lease_cannot_be_renewed_even_by_its_holder() -> None:
    """Renewing means holding without a gap: after a lapse the holder must acquire
    again, which makes the scheduler reload what another leader may have run."""
    Lease.objects.acquire("beat", "host-a:1", seconds=SECONDS)
    expire()

    assert not Lease.objects.renew("beat", "host-a:1", seconds=SECONDS)
    assert Lease.objects.acquire("beat", "host-a:1", seconds=SECONDS)


@pytest.mark.django_db
def test_the_holder_may_acquire_its_own_unexpired_lease_again() -> None:
    """A beat that stopped leading on a database error starts again at once, not
    after its own lease lapses."""
    Lease.objects.acquire("beat", "host-a:1", seconds=SECONDS)

    assert Lease.objects.acquire("beat", "host-a:1", seconds=SECONDS)
    assert not Lease.objects.acquire("beat", "host-b:2", seconds=SECONDS)


@pytest.mark.django_db
def test_a_released_lease_is_free_at_once_and_only_its_holder_can_release_it() -> None:
    Lease.objects.acquire("beat", "host-a:1", seconds=SECONDS)

    Lease.objects.release("beat", "host-b:2")
    assert Lease.objects.holder_of("beat") == "host-a:1"

    Lease.objects.release("beat", "host-a:1")
    assert Lease.objects.holder_of("beat") is None
    assert Lease.objects.acquire("beat", "host-b:2", seconds=SECONDS)


@pytest.mark.django_db
def test_leases_of_different_names_are_independent() -> None:
    assert Lease.objects.acquire("beat", "host-a:1", seconds=SECONDS)
    assert Lease.objects.acquire("other", "host-b:2", seconds=SECONDS)


@pytest.mark.django_db
def test_claims_are_single_queries_for_the_leader_and_three_for_a_standby(
    django_assert_num_queries: pytest.FixtureRequest,
) -> None:
    Lease.objects.acquire("beat", "host-a:1", seconds=SECONDS)
    with django_assert_num_queries(1):  # type: ignore[operator]
        Lease.objects.renew("beat", "host-a:1", seconds=SECONDS)
    # A standby's attempt: the conditional UPDATE, the existence check, the holder.
    with django_assert_num_queries(3):  # type: ignore[operator]
        Lease.objects.acquire("beat", "host-b:2", seconds=SECONDS)
        Lease.objects.holder_of("beat")


def race_for(holders: list[str]) -> list[str]:
    """Every holder claims at the same moment, each on its own connection; the
    winners."""
    barrier = threading.Barrier(len(holders))
    won: list[str] = []

    def claim(holder: str) -> None:
        try:
            barrier.wait()
            if Lease.objects.acquire("beat", holder, seconds=SECONDS):
                won.append(holder)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite has one writer at a time; the race needs concurrent connections",
)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_claimants_of_an_expired_lease_never_both_win() -> None:
    Lease.objects.acquire("beat", "setup:0", seconds=SECONDS)
    for round_ in range(10):
        expire()

        won = race_for([f"host-{i}:{round_}" for i in range(6)])

        assert len(won) == 1, (round_, won)
        assert Lease.objects.holder_of("beat") == won[0]
