"""Operations build a rule in the segment form with the keyboard alone: add a condition, pick its
field, operator and value, nest a group, remove a condition; every control has a name."""

import json

import pytest
from playwright.sync_api import expect

from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db(transaction=True)

CONTROLS = ", ".join(f"[data-rule-builder] {tag}" for tag in ("select", "input", "textarea", "button"))


def node(page, path: str):
    return page.locator(f'[data-rb-node="{path}"]')


def focused(page) -> dict:
    """Where the keyboard is: the focused control's builder path and role, or its tag and name."""
    return page.evaluate(
        """() => { const e = document.activeElement;
        return {path: e.dataset.rbPath ?? null, role: e.dataset.rbRole ?? null, tag: e.tagName,
                name: e.getAttribute("aria-label") || e.textContent.trim()}; }"""
    )


def tab_to(page, name: str, *, backwards: bool = False, limit: int = 40) -> None:
    """Press Tab (or Shift+Tab) until the control named `name` has the focus."""
    for _ in range(limit):
        if focused(page)["name"] == name:
            return
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
    raise AssertionError(f"{name!r} cannot be reached with the Tab key; the focus is on {focused(page)}")


def choose_with_arrows(page, select, value: str, *, limit: int = 20) -> None:
    """Move a focused select's choice with the arrow keys until it shows `value`."""
    for _ in range(limit):
        if select.input_value() == value:
            return
        page.keyboard.press("ArrowDown")
    raise AssertionError(f"{value!r} cannot be reached with the arrow keys")


def accessible_names(page) -> list[tuple[str, str, str]]:
    """(tag, role, accessible name) of every control in the builder, as Chromium computes them."""
    cdp = page.context.new_cdp_session(page)
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    names = []
    for node_id in cdp.send("DOM.querySelectorAll", {"nodeId": root, "selector": CONTROLS})["nodeIds"]:
        tag = cdp.send("DOM.describeNode", {"nodeId": node_id})["node"]["nodeName"]
        ax = cdp.send("Accessibility.getPartialAXTree", {"nodeId": node_id, "fetchRelatives": False})["nodes"][0]
        names.append((tag, ax.get("role", {}).get("value", ""), ax.get("name", {}).get("value", "")))
    return names


def test_a_rule_can_be_built_with_the_keyboard_alone(page, live_server, ops_user, log_in_as, screenshot):
    ContactFactory.create_batch(2, lead_score=80, lifecycle_stage="mql")
    ContactFactory(lead_score=80, lifecycle_stage="customer")
    ContactFactory(lead_score=10, lifecycle_stage="mql")
    log_in_as(ops_user)
    page.goto("/admin/segments/segment/add/")
    count = page.locator("[data-rb-count]")
    page.locator("#id_name").focus()
    page.keyboard.type("Keyboard built")

    # all[0]: add a condition; the keyboard lands on its field picker
    tab_to(page, "Add condition to the whole rule")
    page.keyboard.press("Enter")
    assert focused(page) == {"path": "all[0]", "role": "field", "tag": "SELECT", "name": "Field"}

    # field by typing its name, operator with the arrow keys, value typed
    page.keyboard.type("Lead score")
    expect(node(page, "all[0]").get_by_label("Field")).to_have_value("lead_score")
    assert focused(page)["role"] == "field"  # the redraw keeps the focus where it was
    page.keyboard.press("Tab")
    assert focused(page)["role"] == "op"
    choose_with_arrows(page, node(page, "all[0]").get_by_label("Operator"), "gte")
    assert focused(page)["role"] == "op"
    page.keyboard.press("Tab")
    assert focused(page) == {"path": "all[0]", "role": "value", "tag": "INPUT", "name": "Value"}
    page.keyboard.press("Control+A")
    page.keyboard.type("50")
    expect(count).to_contain_text("3 contacts match")

    # all[1]: a nested ANY group with one condition on the lifecycle stage
    tab_to(page, "Add group to the whole rule")
    page.keyboard.press("Enter")
    assert focused(page) == {"path": "all[1]", "role": "group", "tag": "SELECT", "name": "Group type"}
    tab_to(page, "Add condition to all[1]")
    page.keyboard.press("Space")
    assert focused(page) == {"path": "all[1].any[0]", "role": "field", "tag": "SELECT", "name": "Field"}
    # a new condition asks for its field before anything else
    expect(node(page, "all[1].any[0]").get_by_label("Value")).to_have_count(0)
    page.keyboard.type("Lifecycle stage")
    expect(node(page, "all[1].any[0]").get_by_label("Field")).to_have_value("lifecycle_stage")
    tab_to(page, "Value")
    page.keyboard.type("mql")
    expect(node(page, "all[1].any[0]").get_by_label("Value")).to_have_value("mql")
    expect(count).to_contain_text("2 contacts match")

    # a third condition turned into an event condition from its field picker, negated and back,
    # then removed again, all with the keyboard
    tab_to(page, "Add condition to the whole rule")
    page.keyboard.press("Enter")
    page.keyboard.type("Activity (")  # "Activity (event condition)", not the "Activity count" measure
    expect(node(page, "all[2]").get_by_label("Activity kind")).to_be_visible()
    assert focused(page) == {"path": "all[2]", "role": "field", "tag": "SELECT", "name": "Field"}
    tab_to(page, "Negate all[2]")
    page.keyboard.press("Enter")
    expect(node(page, "all[2]")).to_have_class("rb-node rb-not")
    assert focused(page)["name"] == "Remove NOT at all[2]"  # on the NOT that now stands at all[2]
    page.keyboard.press("Enter")
    expect(node(page, "all[2]")).to_have_class("rb-node rb-condition rb-event")
    tab_to(page, "Remove all[2]")
    page.keyboard.press("Enter")
    expect(node(page, "all[2]")).to_have_count(0)
    after_removal = focused(page)
    assert after_removal["tag"] != "BODY", "removing a condition must leave the focus in the builder"
    assert after_removal["path"] is not None
    expect(count).to_contain_text("2 contacts match")

    rule = json.loads(page.locator("#id_rule").input_value())
    assert rule == {
        "all": [
            {"field": "lead_score", "op": "gte", "value": 50},
            {"any": [{"field": "lifecycle_stage", "op": "eq", "value": "mql"}]},
        ]
    }

    # every control in the builder has an accessible name
    page.get_by_text("Rule as JSON").click()
    unnamed = [(tag, role) for tag, role, name in accessible_names(page) if not name.strip()]
    assert unnamed == []
    screenshot("rule-builder-keyboard", page.locator("[data-rule-builder]"))
