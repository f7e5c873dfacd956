import pytest
from django.urls import reverse

from agentops.memory import services
from agentops.memory.models import (
    AttachmentMode,
    ChangeOperation,
    ChangeStatus,
    Dream,
    DreamChange,
    DreamStatus,
    Memory,
    MemoryStatus,
    MemoryStore,
    StoreAttachment,
)
from agentops.teams.models import Role


@pytest.fixture
def editor_client(member_of_team_a, login):
    return login(member_of_team_a(Role.EDITOR))


@pytest.fixture
def viewer_client(member_of_team_a, login):
    return login(member_of_team_a(Role.VIEWER))


@pytest.fixture
def dream(store, make_memory):
    target = make_memory("Hours", "9 to 5.")
    dream = Dream.objects.create(
        team=store.team, store=store, model="m", status=DreamStatus.SUCCEEDED
    )
    add = DreamChange.objects.create(
        dream=dream,
        position=0,
        operation=ChangeOperation.ADD,
        title="Quote the order number",
        content="Always quote it.",
        rationale="Recurs in 2 sessions.",
        evidence=[{"run_id": None, "evaluation_id": 4, "quote": "quote the order number"}],
    )
    retire = DreamChange.objects.create(
        dream=dream,
        position=1,
        operation=ChangeOperation.RETIRE,
        before=[{"id": target.pk, "title": "Hours", "content": "9 to 5.", "version": 1}],
        rationale="Outdated.",
        evidence=[{"run_id": None, "evaluation_id": 5}],
    )
    retire.targets.set([target])
    dream.add_change, dream.retire_change, dream.target = add, retire, target
    return dream


def test_store_list_shows_the_teams_stores_only(viewer_client, store, team_b, charlie):
    services.memory_store_create(team=team_b, actor=charlie, name="B secrets")
    page = viewer_client.get(reverse("memory:stores"))
    assert page.status_code == 200
    assert b"Support knowledge" in page.content and b"B secrets" not in page.content
    empty = viewer_client.get(reverse("memory:stores"), {"q": "zzz"})
    assert b"No memory store matches" in empty.content


def test_empty_store_list_invites_a_first_store(editor_client):
    page = editor_client.get(reverse("memory:stores"))
    assert b"No memory stores yet" in page.content
    assert b"Create the first store" in page.content


def test_editor_creates_a_store_with_field_errors_for_bad_input(editor_client, team_a):
    bad = editor_client.post(reverse("memory:store-create"), {"name": "", "dream_every_hours": "0"})
    assert bad.status_code == 400
    assert b"This field is required" in bad.content
    assert b"Dream at most once an hour" in bad.content
    ok = editor_client.post(
        reverse("memory:store-create"),
        {"name": "Ops", "dream_model": "claude-sonnet-5-5", "description": "d"},
    )
    store = MemoryStore.objects.get(team=team_a, name="Ops")
    assert ok["Location"] == reverse("memory:store", args=[store.pk])


@pytest.mark.parametrize("name", ["memory:store-create"])
def test_reviewer_cannot_create_stores(bob_client, name):
    assert bob_client.get(reverse(name)).status_code == 403


def test_store_page_filters_searches_and_paginates(bob_client, store, make_memory, settings):
    settings.PAGE_SIZE = 2
    make_memory("Refund window", "Refunds within 30 days.", tags=["policy"])
    make_memory("Shipping", "Ships in 2 days.", tags=["shipping"])
    make_memory("Fax", "Faxes welcome.", status=MemoryStatus.PROPOSED)
    url = reverse("memory:store", args=[store.pk])
    page = bob_client.get(url)
    assert page.status_code == 200 and "Page 1 of 2" in page.content.decode()
    assert page.context["page"].paginator.count == 3
    assert bob_client.get(url, {"status": "proposed"}).context["page"].paginator.count == 1
    tagged = bob_client.get(url, {"tag": "policy"})
    assert [m.title for m in tagged.context["page"]] == ["Refund window"]
    found = bob_client.get(url, {"q": "refunds"}, HTTP_HX_REQUEST="true")
    assert b"Refund window" in found.content and b"Shipping" not in found.content
    assert b"<h1>" not in found.content  # the fragment only
    nothing = bob_client.get(url, {"q": "zebra"})
    assert b"No memory matches these filters" in nothing.content


def test_other_teams_pages_are_404(charlie_client, store, make_memory, dream, attached):
    memory = make_memory("Refund window", "30 days.")
    for url in [
        reverse("memory:store", args=[store.pk]),
        reverse("memory:detail", args=[memory.pk]),
        reverse("memory:dream", args=[dream.pk]),
        reverse("memory:store-edit", args=[store.pk]),
        reverse("memory:attachment-edit", args=[attached.pk]),
    ]:
        assert charlie_client.get(url).status_code == 404, url
    response = charlie_client.post(
        reverse("memory:change-decide", args=[dream.pk, dream.add_change.pk]),
        {"decision": "approve"},
    )
    assert response.status_code == 404
    assert charlie_client.post(reverse("memory:retire", args=[memory.pk])).status_code == 404
    assert charlie_client.post(reverse("memory:detach", args=[attached.pk])).status_code == 404


def test_memory_create_edit_retire_and_history(editor_client, store):
    bad = editor_client.post(reverse("memory:create", args=[store.pk]), {"title": "x"})
    assert bad.status_code == 400 and b"This field is required" in bad.content
    editor_client.post(
        reverse("memory:create", args=[store.pk]),
        {"title": "Refunds", "content": "30 days.", "tags": "policy"},
    )
    memory = Memory.objects.get(store=store)
    response = editor_client.post(
        reverse("memory:edit", args=[memory.pk]),
        {"title": "Refunds", "content": "30 days, **receipt** needed.", "tags": "policy"},
    )
    assert response.status_code == 302
    unchanged = editor_client.post(
        reverse("memory:edit", args=[memory.pk]),
        {"title": "Refunds", "content": "30 days, **receipt** needed.", "tags": "policy"},
    )
    assert unchanged.status_code == 400 and b"Nothing changed" in unchanged.content
    editor_client.post(reverse("memory:retire", args=[memory.pk]))
    memory.refresh_from_db()
    assert memory.status == MemoryStatus.RETIRED
    page = editor_client.get(reverse("memory:detail", args=[memory.pk]))
    html = page.content.decode()
    assert "<strong>receipt</strong>" in html  # content through the markdown filter
    assert html.count('id="version-') == 3
    assert 'class="diff-add"' in html


def test_viewers_read_but_do_not_edit(viewer_client, store, make_memory):
    memory = make_memory("Refunds", "30 days.")
    assert viewer_client.get(reverse("memory:detail", args=[memory.pk])).status_code == 200
    assert viewer_client.get(reverse("memory:edit", args=[memory.pk])).status_code == 403
    assert viewer_client.post(reverse("memory:retire", args=[memory.pk])).status_code == 403
    assert viewer_client.get(reverse("memory:dream-start", args=[store.pk])).status_code == 403


def test_reviewer_approves_an_agents_proposal(bob_client, viewer_client, store, make_memory):
    memory = make_memory("Receipts", "Ask for one.", status=MemoryStatus.PROPOSED)
    url = reverse("memory:decide", args=[memory.pk])
    assert viewer_client.post(url, {"decision": "approve"}).status_code == 403
    bob_client.post(url, {"decision": "approve"})
    memory.refresh_from_db()
    assert memory.status == MemoryStatus.ACTIVE
    again = bob_client.post(url, {"decision": "reject"}, follow=True)
    assert b"cannot be rejected" in again.content


def test_attachments_are_added_edited_and_removed(editor_client, store, support_agent):
    url = reverse("memory:attach", args=[store.pk])
    bad = editor_client.post(
        url, {"agent": support_agent.pk, "mode": "read_only", "token_budget": 0, "holdout_share": 1}
    )
    assert bad.status_code == 400
    assert b"The token budget must be at least 1" in bad.content
    assert b"The holdout share must be between 0 and 0.9" in bad.content
    editor_client.post(
        url,
        {
            "agent": support_agent.pk,
            "mode": "read_write",
            "token_budget": 500,
            "holdout_share": 0.2,
        },
    )
    attachment = StoreAttachment.objects.get(store=store)
    assert (attachment.mode, attachment.token_budget) == ("read_write", 500)
    edit = reverse("memory:attachment-edit", args=[attachment.pk])
    assert editor_client.get(edit).status_code == 200
    editor_client.post(edit, {"mode": "read_only", "token_budget": 300, "holdout_share": 0})
    attachment.refresh_from_db()
    assert (attachment.mode, attachment.token_budget) == ("read_only", 300)
    editor_client.post(reverse("memory:detach", args=[attachment.pk]))
    assert not StoreAttachment.objects.exists()


def test_dream_start_from_the_store_page_and_refusal(editor_client, store, support_agent):
    url = reverse("memory:dream-start", args=[store.pk])
    assert editor_client.get(url).status_code == 200
    bad = editor_client.post(
        url, {"since": "2026-05-02", "until": "2026-05-01", "model": store.dream_model}
    )
    assert bad.status_code == 400 and b"The end date is before the start date" in bad.content
    response = editor_client.post(url, {"model": store.dream_model, "agents": [support_agent.pk]})
    dream = Dream.objects.get(store=store)
    assert response["Location"] == reverse("memory:dream", args=[dream.pk])
    assert list(dream.agents.all()) == [support_agent]
    second = editor_client.post(url, {"model": store.dream_model})
    assert second.status_code == 400
    assert b"A dream is already in progress on Support knowledge" in second.content
    page = editor_client.get(reverse("memory:store", args=[store.pk]))
    assert b'hx-trigger="every 2s"' in page.content  # the dreams list polls while active
    progress = editor_client.get(
        reverse("memory:dream", args=[dream.pk]), {"part": "progress"}, HTTP_HX_REQUEST="true"
    )
    assert b"Gathering sessions" in progress.content and "HX-Refresh" not in progress


def test_changeset_page_approve_reject_and_all(bob_client, viewer_client, dream, store):
    page = viewer_client.get(reverse("memory:dream", args=[dream.pk]))
    html = page.content.decode()
    assert "Quote the order number" in html and "Evidence (1)" in html
    assert 'class="diff-add"' in html and 'class="diff-del"' in html
    assert "Approve all 2" not in html  # viewers cannot decide
    decide = reverse("memory:change-decide", args=[dream.pk, dream.add_change.pk])
    assert viewer_client.post(decide, {"decision": "approve"}).status_code == 403
    bob_client.post(decide, {"decision": "approve"})
    dream.add_change.refresh_from_db()
    assert dream.add_change.status == ChangeStatus.APPROVED
    assert Memory.objects.get(title="Quote the order number").status == MemoryStatus.ACTIVE
    bob_client.post(reverse("memory:dream-decide-all", args=[dream.pk]), {"decision": "reject"})
    dream.retire_change.refresh_from_db()
    assert dream.retire_change.status == ChangeStatus.REJECTED
    dream.target.refresh_from_db()
    assert dream.target.status == MemoryStatus.ACTIVE


def test_rollback_from_the_store_page(editor_client, store, make_memory, alice):
    first = make_memory("A", "first")
    make_memory("B", "second")
    url = reverse("memory:rollback", args=[store.pk])
    bad = editor_client.post(url, {"to_version": 999999}, follow=True)
    assert b"Choose one of the listed earlier states" in bad.content
    editor_client.post(url, {"to_version": first.current_version_id})
    assert list(store.memories.filter(status="active").values_list("title", flat=True)) == ["A"]


def test_store_edit(editor_client, store):
    url = reverse("memory:store-edit", args=[store.pk])
    assert editor_client.get(url).status_code == 200
    editor_client.post(
        url, {"name": "Renamed", "dream_model": store.dream_model, "auto_apply": "on"}
    )
    store.refresh_from_db()
    assert store.name == "Renamed" and store.auto_apply


def test_store_list_counts_what_waits_for_review(viewer_client, store, dream, make_memory):
    make_memory("Idea", "From a run.", status=MemoryStatus.PROPOSED)
    page = viewer_client.get(reverse("memory:stores"))
    (row,) = page.context["page"].object_list
    assert (row.active_count, row.proposed_count, row.pending_changes) == (1, 1, 2)
    store_page = viewer_client.get(reverse("memory:store", args=[store.pk]))
    assert b"2 to review" in store_page.content


def test_an_agent_page_lists_the_stores_it_reads(alice_client, support_agent, store, alice):
    page = alice_client.get(reverse("agents:detail", args=[support_agent.pk])).text
    assert "This agent reads no memory store." in page
    services.attachment_add(
        store=store,
        actor=alice,
        agent=support_agent,
        mode=AttachmentMode.READ_WRITE,
        token_budget=400,
        holdout_share=0.2,
    )
    page = alice_client.get(reverse("agents:detail", args=[support_agent.pk])).text
    assert reverse("memory:store", args=[store.pk]) in page
    assert "Support knowledge" in page and "read and propose · up to 400 tokens" in page
    assert "20% of runs held out" in page
