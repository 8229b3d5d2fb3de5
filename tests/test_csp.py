"""The Content-Security-Policy header: on pages and API answers, strict everywhere,
with data: images on the API docs page only; templates carry no inline code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


def policy(response: object) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]  # type: ignore[index]
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {name: values for name, *values in directives}


def test_pages_and_api_answers_carry_the_policy(viewer_client: Client) -> None:
    for response in (
        viewer_client.get("/"),
        viewer_client.get("/fleet/"),
        viewer_client.get("/api/v1/audit-events/"),
        Client().get("/accounts/login/"),
        Client().get("/api/v1/audit-events/"),
    ):
        directives = policy(response)
        assert directives["default-src"] == ["'self'"]
        assert directives["frame-ancestors"] == ["'none'"]
        assert directives["object-src"] == ["'none'"]
        assert "img-src" not in directives
        assert "'unsafe-inline'" not in response["Content-Security-Policy"]


def test_api_docs_allow_data_images_only(viewer_client: Client) -> None:
    page = viewer_client.get("/api/docs/")
    script = viewer_client.get("/api/docs/?script")

    assert policy(page)["img-src"] == ["'self'", "data:"]
    assert "<style>" not in page.content.decode()
    assert "<script>" not in page.content.decode()
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")


def test_templates_hold_no_inline_styles_or_scripts() -> None:
    inline = re.compile(r"<style|\sstyle=|<script(?![^>]*\ssrc=)|\son[a-z]+=", re.I)
    offenders = [
        str(path.relative_to(ROOT))
        for path in Path(ROOT, "templates").rglob("*.html")
        if inline.search(re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S))
    ]

    assert offenders == []
