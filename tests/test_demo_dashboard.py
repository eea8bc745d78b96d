"""The dashboard in two browsers: the document list and open documents follow what
everyone does, with no reload; a title that is not one is refused beside its field."""

from __future__ import annotations

import itertools

import pytest
from playwright.sync_api import Page, expect

from tests.test_browser import _logged_in, _users

pytestmark = pytest.mark.browser

_n = itertools.count(1)


def dashboard_as(browser, server, errors: list[str], name: str) -> Page:
    url = f"{server.url}/accounts/login/?next=/dashboard/"
    return _logged_in(browser, errors, url, name, "", "#login")


def test_a_new_document_and_a_save_show_up_for_everyone(browser, server, page_errors):
    _users("alice", "carol")
    title = f"Quarterly report {next(_n)}"
    alice = dashboard_as(browser, server, page_errors, "alice")
    carol = dashboard_as(browser, server, page_errors, "carol")
    alice.fill("#id_title", title)
    alice.click("#create")
    expect(alice.locator("#doc-title")).to_have_text(title)  # alice is on her new document
    expect(alice.locator("body")).to_have_attribute("data-live", "1", timeout=10_000)
    row = carol.locator("#documents tbody tr", has_text=title)
    expect(row).to_have_count(1)  # in carol's list, no reload
    expect(row.locator(".viewing")).to_have_text("alice")
    expect(carol.locator("#documents-empty")).to_be_hidden()

    row.get_by_role("link", name=title).click()
    carol.click("#edit")
    expect(alice.locator("#here")).to_have_text("alice (viewing); carol (editing)")
    carol.fill("#id_title", f"{title}, revised")
    carol.fill("#id_body", "Sales up.\n\nCosts down.")
    carol.click("#save")
    expect(carol.locator("#doc-title")).to_have_text(f"{title}, revised")
    # alice's open page follows, title and body, without a reload
    expect(alice.locator("#doc-title")).to_have_text(f"{title}, revised")
    expect(alice.locator("#body p")).to_have_text(["Sales up.", "Costs down."])
    expect(alice.locator("#doc-notice")).to_have_text("Updated just now.")
    expect(alice).to_have_title(f"{title}, revised · tidings")
    alice.get_by_role("link", name="← dashboard").click()
    expect(alice.locator("#documents tbody tr", has_text=f"{title}, revised")).to_have_count(1)
    assert page_errors == []


def test_an_editor_is_told_of_a_newer_save(browser, server, page_errors):
    _users("dora", "eve")
    title = f"Shared notes {next(_n)}"
    dora = dashboard_as(browser, server, page_errors, "dora")
    dora.fill("#id_title", title)
    dora.click("#create")
    slug = dora.url.rstrip("/").split("/")[-1]
    eve = dashboard_as(browser, server, page_errors, "eve")
    eve.goto(f"{server.url}/dashboard/docs/{slug}/edit/")
    expect(eve.locator("body")).to_have_attribute("data-live", "1", timeout=10_000)
    eve.fill("#id_body", "eve's draft")
    dora.click("#edit")
    dora.fill("#id_body", "dora's version")
    dora.click("#save")
    expect(eve.locator("#doc-notice")).to_be_visible()
    expect(eve.locator("#doc-notice")).to_contain_text("Someone saved a newer version")
    expect(eve.locator("#id_body")).to_have_value("eve's draft")  # nothing taken from eve
    eve.click("#load-newer")
    expect(eve.locator("#id_body")).to_have_value("dora's version")
    expect(eve.locator("#doc-notice")).to_be_hidden()
    assert page_errors == []


def test_a_blank_or_too_long_title_is_refused_beside_the_field(browser, server, page_errors):
    _users("fay")
    fay = dashboard_as(browser, server, page_errors, "fay")
    expect(fay.locator("text=A title of 1 to 120 characters.")).to_be_visible()
    fay.fill("#id_title", "    ")
    fay.click("#create")
    error = fay.locator("#new-document .field-error")
    expect(error).to_have_text("Give the document a title (spaces alone are not one).")
    expect(fay.locator("#new-document .field")).to_have_class("field has-error")
    long = "t" * 130
    fay.fill("#id_title", long)
    expect(fay.locator("#id_title")).to_have_value(long)  # typed in full, not cut at 120
    expect(fay.locator("#id_title-count")).to_have_text("130 / 120: 10 too many")
    fay.click("#create")
    expect(error).to_have_text("A title may have at most 120 characters (this one has 130).")
    expect(fay.locator("#id_title")).to_have_value(long)  # given back to fix
    assert page_errors == []
