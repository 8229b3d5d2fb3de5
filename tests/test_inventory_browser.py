"""Headless Chromium: an admin uploads the Ansible inventory in the admin, a bad
one is refused naming its line, and an SRE follows the navigation to the drift
page, which names the rogue, missing and mislabelled runners synced from the
simulator (1366×900 screenshot under ``var/screenshots/``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.github import gateway_from_settings
from githubsim import Simulator
from inventory.models import InventoryLoad
from runners import sync
from tests.browsing import new_page, screenshot, sign_in
from tests.processes import CHROMIUM
from tests.test_inventory import FLEET_INI, register_fleet

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
]


def test_admin_uploads_the_inventory_and_an_sre_sees_the_drift(
    live_server: Any,
    sim: Simulator,
    admin_user: User,
    sre: User,
    browser: Any,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    register_fleet(sim)
    sync.sync_fleet(
        gw=gateway_from_settings(base_url=sim.url, token="t", max_retries=0)
    )
    base = live_server.url
    admin = new_page(browser)
    add = "/admin/inventory/inventoryload/add/"
    sign_in(admin, base, admin_user, add)
    bad = tmp_path / "broken.ini"
    bad.write_text("[deploy_runners]\nprod-[1:3] runner_labels\n")
    admin.set_input_files("input[name=file]", str(bad))
    admin.click("input[name=_save]")
    expect(admin.locator(".errorlist")).to_contain_text(
        "line 2: expected key=value after host 'prod-[1:3]'"
    )
    assert not InventoryLoad.objects.exists()
    good = tmp_path / "runners.ini"
    good.write_text(FLEET_INI)
    admin.set_input_files("input[name=file]", str(good))
    admin.click("input[name=_save]")
    expect(admin.locator(".messagelist")).to_contain_text("was added successfully")

    page = new_page(browser)
    sign_in(page, base, sre, "/")
    expect(page.locator("#board-inventory [data-count=rogue]")).to_contain_text("1")
    expect(page.locator('[data-rule="InventoryRogueRunners"]')).to_be_visible()
    page.locator("#board-inventory").scroll_into_view_if_needed()
    screenshot(page, "inventory-board")
    page.locator("nav").get_by_role("link", name="Inventory").click()
    page.wait_for_url(f"{base}/inventory/")
    expect(page.locator("#inventory-source")).to_contain_text("admin upload")
    expect(page.locator('[data-rogue="rogue-1"]')).to_be_visible()
    expect(page.locator('[data-missing="prod-3"]')).to_contain_text("never registered")
    expect(page.locator('[data-labels="prod-2"] .chip-absent')).to_have_text("deploy")
    expect(page.locator('[data-labels="build-1"] .chip-extra')).to_have_text("gpu")
    expect(page.locator("#recent-loads")).to_contain_text("loaded")
    screenshot(page, "inventory-drift")
    page.locator("#labels_differ").scroll_into_view_if_needed()
    screenshot(page, "inventory-drift-labels")
