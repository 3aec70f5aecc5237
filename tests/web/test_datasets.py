"""The datasets pages in a real browser: list and empty state, create with checks before sending
and the server's refusals beside their fields, the transformation editor with its live preview,
a concurrent edit (ABORTED), and delete; every change verified through the SDK."""

from __future__ import annotations

import re

import grpc
import pytest
from playwright.sync_api import Page, Request, expect

from floe.errors import RpcError
from floe.v1 import datasets_pb2, transforms_pb2
from tests.integration.agentkit import free_port, udp_dataset
from tests.web.conftest import Stack, shot, sign_in

TENANT = "dsweb-acme"
EMPTY_TENANT = "dsweb-empty"


def form_shot(page: Page, name: str) -> None:
    """A full-page shot of a dataset form, scrolled to the end so the sticky save bar sits in its
    place instead of over the middle of the picture."""
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    shot(page, name)


def test_dataset_create_edit_preview_and_delete(page: Page, stack: Stack) -> None:
    blocked_port, port = free_port(), free_port()
    with stack.client() as client:
        client.tenants.create(TENANT, display_name="DS Acme")
        client.tenants.create(EMPTY_TENANT, display_name="DS Empty")
        # Holds a port on proxy "local", so the browser can meet the server's own refusal.
        client.datasets.create(TENANT, "blocker", udp_dataset(blocked_port, agent="local"))
    creates: list[str] = []

    def on_request(req: Request) -> None:
        if req.url.endswith("/floe.v1.DatasetService/CreateDataset"):
            creates.append(req.url)

    page.on("request", on_request)
    sign_in(page, stack)
    main = page.get_by_role("main")

    # A tenant without datasets: the empty state says how to make one (button and CLI).
    page.goto(f"{stack.url}#/datasets?tenant={EMPTY_TENANT}")
    expect(page.get_by_role("heading", name="No datasets in DS Empty yet")).to_be_visible()
    expect(main.get_by_text("floe datasets create dsweb-empty/syslog --source-type syslog_udp")).to_be_visible()
    expect(page.get_by_role("combobox", name="Tenant").first).to_have_value(EMPTY_TENANT)
    shot(page, "datasets-empty")

    page.get_by_label("Tenant", exact=True).first.select_option(TENANT)
    expect(main.get_by_role("link", name="blocker")).to_be_visible()
    main.get_by_role("link", name="New dataset").click()
    expect(page.get_by_role("heading", name="New dataset")).to_be_visible()
    expect(main.get_by_label("Tenant")).to_have_value(TENANT)  # preselected from the top bar
    main.get_by_label("Dataset id").fill("syslog")
    main.get_by_label("Display name").fill("Firewall syslog")
    expect(main.get_by_label("Source type")).to_have_value("1")  # syslog_udp
    expect(main.get_by_label("Data hint")).to_have_value("syslog")
    main.get_by_label("Proxy", exact=True).select_option("local")

    # Checked before sending: nothing reaches the server.
    main.get_by_label("Port").fill("70000")
    main.get_by_role("button", name="Create dataset").click()
    port_field = main.locator(".field").filter(has=page.get_by_label("Port"))
    expect(port_field.get_by_role("alert")).to_have_text("Port must be a whole number from 1 to 65535")
    expect(main.get_by_label("Port")).to_be_focused()
    assert creates == []

    # The server's refusal (the port is taken on that proxy) shows beside the port.
    main.get_by_label("Port").fill(str(blocked_port))
    main.get_by_role("button", name="Create dataset").click()
    expect(port_field.get_by_role("alert")).to_contain_text(
        f"UDP port {blocked_port} is already used by tenants/{TENANT}/datasets/blocker on the same proxy"
    )
    assert len(creates) == 1

    main.get_by_label("Port").fill(str(port))
    main.get_by_role("button", name="Create dataset").click()
    expect(page.get_by_role("heading", name="Dataset Firewall syslog")).to_be_visible()
    expect(main.get_by_role("status").filter(has_text="Created")).to_have_text(
        f"Created tenants/{TENANT}/datasets/syslog."
    )
    name = f"tenants/{TENANT}/datasets/syslog"
    with stack.client() as client:
        ds = client.datasets.get(name)
    assert (ds.source.port, ds.source.bind_host, ds.proxy.agent, ds.data_hint) == (port, "0.0.0.0", "local", "syslog")
    assert ds.active and not ds.transformations

    # Two steps: convert "status" to a whole number, rename "msg" to "message".
    new_step = main.get_by_label("New step")
    new_step.select_option("convertType")
    main.get_by_role("button", name="Add step").click()
    step1 = main.get_by_role("group", name="Step 1: Convert type")
    step1.get_by_label("Field").fill("status")
    expect(step1.get_by_label("To type")).to_have_value("2")  # int
    new_step.select_option("renameField")
    main.get_by_role("button", name="Add step").click()
    step2 = main.get_by_role("group", name="Step 2: Rename field")
    step2.get_by_label("From").fill("msg")
    step2.get_by_label("To", exact=True).fill("message")

    # Bad JSON is reported on the sample box before anything is sent.
    sample = main.get_by_label("Sample records")
    sample.fill('{"msg": "hello", "status": "200"}\n{"msg": ')
    expect(main.get_by_text(re.compile(r"^Line 2 is not valid JSON"))).to_be_visible()
    expect(sample).to_have_attribute("aria-invalid", "true")

    sample.fill('{"msg": "hello", "status": "200"}\n{"msg": "bad", "status": "oops"}')
    expect(main.get_by_role("status").filter(has_text="kept")).to_have_text("2 in → 1 kept, 1 failed")
    output = main.get_by_role("table", name="Output records")
    expect(output.get_by_role("columnheader", name="message")).to_be_visible()
    expect(output.get_by_role("cell", name="hello")).to_be_visible()
    expect(output).not_to_contain_text("oops")
    failed = main.get_by_role("table", name="Failed records")
    expect(failed.get_by_role("row").filter(has_text="oops")).to_contain_text("1. convert_type")
    expect(failed).to_contain_text("does not convert to a whole number")
    expect(step1).to_contain_text("2 in → 1 out · 1 failed")

    # A step the server refuses while previewing is marked on the step itself.
    step2.get_by_label("To", exact=True).fill("msg")
    expect(step2.get_by_role("alert")).to_contain_text("must differ from 'from'")
    step2.get_by_label("To", exact=True).fill("message")
    expect(main.get_by_role("status").filter(has_text="kept")).to_have_text("2 in → 1 kept, 1 failed")
    form_shot(page, "dataset-preview")

    main.get_by_role("button", name="Save changes").click()
    expect(main.get_by_role("status").filter(has_text="Saved")).to_have_text("Saved transformations.")
    with stack.client() as client:
        ds = client.datasets.get(name)
    assert [s.WhichOneof("kind") for s in ds.transformations] == ["convert_type", "rename_field"]
    assert ds.transformations[0].convert_type == transforms_pb2.ConvertType(
        field="status", type=transforms_pb2.ConvertType.TYPE_INT
    )
    assert getattr(ds.transformations[1].rename_field, "from") == "msg"
    # The saved form comes back with the sample kept, and the preview runs again on it.
    expect(main.get_by_role("status").filter(has_text="kept")).to_have_text("2 in → 1 kept, 1 failed")
    form_shot(page, "dataset-edit")

    # Someone else changes the dataset meanwhile: saving says so instead of overwriting.
    with stack.client() as client:
        other = client.datasets.get(name)
        other.display_name = "Changed elsewhere"
        client.datasets.update(other, ["display_name"])
    main.get_by_label("Description").fill("Edge firewall logs")
    main.get_by_role("button", name="Save changes").click()
    expect(main.get_by_role("alert").filter(has_text="changed by someone else")).to_contain_text("reload")
    main.get_by_role("button", name="Reload").click()
    expect(page.get_by_role("heading", name="Dataset Changed elsewhere")).to_be_visible()
    expect(main.get_by_label("Description")).to_have_value("")

    # The list shows both datasets of the tenant.
    page.goto(f"{stack.url}#/datasets")
    row = main.get_by_role("row").filter(has_text="Changed elsewhere")
    expect(row).to_contain_text(f"UDP {port}")
    expect(row).to_contain_text("local")
    expect(row).to_contain_text("Active")
    expect(row.get_by_role("cell", name="2", exact=True)).to_be_visible()
    shot(page, "datasets")

    row.get_by_role("link", name="Changed elsewhere").click()
    main.get_by_role("button", name="Delete dataset").click()
    main.get_by_role("group", name="Delete syslog?").get_by_role("button", name="Yes").click()
    expect(page.get_by_role("heading", name="Datasets", exact=True)).to_be_visible()
    expect(main.get_by_role("row").filter(has_text="Changed elsewhere")).to_have_count(0)
    with stack.client() as client, pytest.raises(RpcError) as err:
        client.datasets.get(name)
    assert err.value.code == grpc.StatusCode.NOT_FOUND


def test_dataset_form_on_a_narrow_window(page: Page, stack: Stack) -> None:
    sign_in(page, stack)
    page.set_viewport_size({"width": 420, "height": 800})
    page.goto(f"{stack.url}#/datasets/new")
    main = page.get_by_role("main")
    expect(page.get_by_role("heading", name="New dataset")).to_be_visible()
    main.get_by_label("Source type").select_option("7")  # NATS: no port, a required subject option
    expect(main.get_by_label("Port")).to_have_count(0)
    expect(main.get_by_label("Data hint")).to_have_value("ndjson")
    main.get_by_role("button", name="Add option subject").click()
    expect(main.get_by_label("Option 1 key")).to_have_value("subject")
    # No horizontal scrolling of the page itself at 420px (wide tables scroll in their box).
    assert page.evaluate("document.documentElement.scrollWidth") <= 420
    form_shot(page, "datasets-narrow")


def test_conditions_json_steps_and_raw_text_preview(page: Page, stack: Stack) -> None:
    tenant, name = "dsweb-json", "tenants/dsweb-json/datasets/app"
    ds = udp_dataset(free_port())  # assigned to no proxy: nothing binds the port
    host_in = transforms_pb2.Condition()
    getattr(host_in, "in").CopyFrom(transforms_pb2.InSet(field="host", values=["a", "b"]))
    level_or_host = transforms_pb2.Condition(
        any=transforms_pb2.ConditionList(
            conditions=[
                transforms_pb2.Condition(
                    compare=transforms_pb2.Comparison(
                        field="level", operator=transforms_pb2.Comparison.OPERATOR_EQ, value="error"
                    )
                ),
                host_in,
            ]
        )
    )
    ds.transformations.add(
        filter=transforms_pb2.Filter(mode=transforms_pb2.Filter.MODE_INCLUDE, condition=level_or_host)
    )
    ds.transformations.add(
        add_field=transforms_pb2.AddField(field="env", value="prod", overwrite=True),
        when=transforms_pb2.Condition(exists=transforms_pb2.Exists(field="level")),
    )
    with stack.client() as client:
        client.tenants.create(tenant)
        client.datasets.create(tenant, "app", ds)
        # What a piper reports after storing batches (the type of "code" changed once).
        client.datasets.report_fields(
            datasets_pb2.DatasetFields(
                name=f"{name}/fields",
                records=10,
                fields=[
                    datasets_pb2.DatasetField(
                        name="level", type="string", types={"string": 2}, non_null=10, records=10
                    ),
                    datasets_pb2.DatasetField(
                        name="code", type="int64", types={"int64": 2, "string": 1}, non_null=5, records=10
                    ),
                ],
            )
        )
    sign_in(page, stack)
    page.goto(f"{stack.url}#/datasets/{tenant}/app")
    main = page.get_by_role("main")
    known = main.get_by_role("table", name="Known fields")
    expect(known.get_by_role("row").filter(has_text="level")).to_contain_text("100%")
    expect(known.get_by_role("row").filter(has_text="code")).to_contain_text("changed: int64, string")
    step1 = main.get_by_role("group", name="Step 1: Filter records")
    expect(step1).to_contain_text('keep where (level = "error" or host in [a, b])')
    expect(step1.get_by_label("Filter condition: kind")).to_have_value("any")
    expect(step1.get_by_label("Filter condition, part 2: values")).to_have_value("a, b")
    step2 = main.get_by_role("group", name="Step 2: Set field")
    expect(step2.get_by_label("Step 2 when: kind")).to_have_value("exists")

    # Raw text parsed with a data hint, as pipers parse a batch.
    main.get_by_label("Sample format").select_option("kv")
    main.get_by_label("Sample text").fill("level=error host=x\nlevel=info host=a\nlevel=info host=z")
    status = main.get_by_role("status").filter(has_text="kept")
    expect(status).to_have_text("3 in → 2 kept, 0 failed")
    expect(main.get_by_role("table", name="Output records").get_by_role("cell", name="prod")).to_have_count(2)

    step1.get_by_label("Records").select_option(label="Drop matching records")
    expect(status).to_have_text("3 in → 1 kept, 0 failed")
    expect(main.get_by_role("table", name="Output records")).to_contain_text("z")

    # Any step as JSON (the proto3 JSON mapping), checked as it is typed.
    step2.get_by_role("button", name="JSON").click()
    box = step2.get_by_label("Step 2: Set field as JSON")
    expect(box).to_contain_text('"addField"')
    box.fill('{"addField": {"field": "env", ')
    expect(step2.get_by_role("alert")).to_contain_text("Not valid JSON")
    box.fill('{"id": "tag-env", "addField": {"field": "env", "value": "staging"}}')
    expect(main.get_by_role("table", name="Output records").get_by_role("cell", name="staging")).to_be_visible()

    # Reorder: the step (still shown as JSON) moves up; the preview shows the new order's stats.
    step2.get_by_role("button", name="Move step 2 up").click()
    moved = main.get_by_role("group", name="Step 1: Set field")
    expect(moved.get_by_label("Step 1: Set field as JSON")).to_contain_text('"tag-env"')
    expect(main.get_by_role("table", name="What each step did").get_by_role("row").nth(1)).to_contain_text("tag-env")
    main.get_by_role("button", name="Save changes").click()
    expect(main.get_by_role("status").filter(has_text="Saved")).to_have_text("Saved transformations.")
    with stack.client() as client:
        saved = client.datasets.get(name)
    assert saved.transformations[0] == transforms_pb2.Transformation(
        id="tag-env", add_field=transforms_pb2.AddField(field="env", value="staging")
    )
    assert saved.transformations[1].filter == transforms_pb2.Filter(
        mode=transforms_pb2.Filter.MODE_EXCLUDE, condition=level_or_host
    )

    # Remove a step, save, and the dataset keeps one.
    main.get_by_role("button", name="Remove step 1").click()
    expect(main.get_by_role("group", name="Step 1: Filter records")).to_be_visible()
    main.get_by_role("button", name="Save changes").click()
    expect(main.get_by_role("status").filter(has_text="Saved")).to_have_text("Saved transformations.")
    with stack.client() as client:
        assert [s.WhichOneof("kind") for s in client.datasets.get(name).transformations] == ["filter"]
