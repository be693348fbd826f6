"""Takedown notices (the DSA Art. 16 elements, never the reporter's data), their states across
reports, the notice templates, the indicators export (STIX 2.1 parsed back with stix2, CSV),
and the reporter-visible status sealed into the reply bundle."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import stix2
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from test_workstation_cases import OTHER_PASSPHRASE, add_bob, bob_key_file, login  # noqa: F401
from workstation_helpers import (
    Analyst,
    Pickup,
    imported_vault,
    logged_in,
    make_analyst,
    make_vault,
    open_vault,
)

from blagh.bundles import BundleReader
from blagh.cli import cli
from blagh.payloads import decode_document
from crypto.envelope import open_envelope
from crypto.keys import ServerSigningKey
from journalist_interface import audit, indicators, reporter_status, takedown
from journalist_interface.app import create_app
from journalist_interface.config import Unit, WorkstationConfig, load_unit
from journalist_interface.notice_templates import GOOD_FAITH, TemplateError, check
from journalist_interface.replies import make_reply_bundle
from journalist_interface.vault import Vault

SERVER = ServerSigningKey.generate()
UNIT = Unit(
    name="Brigade de lutte contre la cybercriminalité",
    contact="signalement@unit.example.ma",
    legal_basis={
        "terrorism": "Code pénal marocain, art. 218-2 (apologie du terrorisme)",
        "fraud": "Code pénal marocain, art. 540 (escroquerie)",
    },
)
REPORTER = {"name": "Reporter Zaynab", "phone": "+212600112233", "email": "zaynab@mail.example"}
PHOTO = (b"\x89PNG evidence bytes", "evidence.png", "image/png")
LINK = "https://www.facebook.com/groups/propaganda/posts/42?utm_source=share"
KEY = "facebook.com/groups/propaganda/posts/42"
EXPLANATION = "The post praises a terrorist attack and calls for new ones, with a recruiting link."


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def pickup(analyst: Analyst) -> Pickup:
    bundle = Pickup([analyst.key])
    source = bundle.source()
    bundle.report(
        source,
        category="terrorism",
        description=f"Seen at {LINK} by the account @Recruiter_1, my name is {REPORTER['name']}",
        links=[LINK, "https://t.me/recruiter_1"],
        identity=REPORTER,
        files=[PHOTO],
    )
    # The same post, reported again later by someone else.
    bundle.report(
        bundle.source(),
        category="terrorism",
        description="Again",
        links=["facebook.com/groups/propaganda/posts/42/"],
    )
    bundle.report(bundle.source(codename=False), category="fraud", links=["@shop_scam"])
    return bundle


@pytest.fixture
def vault(tmp_path: Path, analyst: Analyst, pickup: Pickup) -> Iterator[Vault]:
    with open_vault(imported_vault(tmp_path, analyst, SERVER, pickup)) as opened:
        yield opened


def report_ids(pickup: Pickup) -> list[str]:
    return [str(report["id"]) for report in pickup.reports]


# --- the notice --------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "fr", "ar", "es"])
def test_a_notice_holds_every_art16_element_and_nothing_of_the_reporter(
    vault: Vault, pickup: Pickup, language: str
) -> None:
    first = report_ids(pickup)[0]
    text = takedown.draft(
        vault, first, "url", KEY, language=language, explanation=EXPLANATION, unit=UNIT
    )
    assert LINK in text  # (a) the exact address, as the report gave it
    assert EXPLANATION in text  # (b) the substantiated explanation...
    assert UNIT.legal_basis["terrorism"] in text  # ...with its legal basis
    assert UNIT.name in text and UNIT.contact in text  # (c) the notifier: the unit
    assert GOOD_FAITH[language] in text  # (d) the good-faith statement
    assert "Meta Platforms Ireland (Facebook)" in text
    for value in REPORTER.values():
        assert value not in text
    assert "{" not in text  # every placeholder filled


def test_an_account_notice_cites_its_profile_address(vault: Vault, pickup: Pickup) -> None:
    first = report_ids(pickup)[0]
    found = {(t.kind, t.value): t for t in takedown.targets(vault, first)}
    assert found[("handle", "@recruiter_1")].exact == "https://t.me/recruiter_1"
    assert found[("handle", "@recruiter_1")].platform == "t.me"
    assert found[("url", KEY)].exact == LINK
    text = takedown.draft(
        vault, first, "handle", "@recruiter_1", language="fr", explanation=EXPLANATION, unit=UNIT
    )
    assert "https://t.me/recruiter_1" in text and "compte" in text


def test_a_notice_is_refused_without_its_elements(vault: Vault, pickup: Pickup) -> None:
    first, _again, fraud = report_ids(pickup)
    draft = takedown.draft
    with pytest.raises(takedown.TakedownError, match="unit's name and contact"):
        draft(vault, first, "url", KEY, language="en", explanation=EXPLANATION, unit=Unit())
    with pytest.raises(takedown.TakedownError, match="explanation"):
        draft(vault, first, "url", KEY, language="en", explanation="illegal", unit=UNIT)
    no_basis = Unit(UNIT.name, UNIT.contact, {"fraud": "art. 540"})
    with pytest.raises(takedown.TakedownError, match="legal basis"):
        draft(vault, first, "url", KEY, language="en", explanation=EXPLANATION, unit=no_basis)
    with pytest.raises(takedown.TakedownError, match="language"):
        draft(vault, first, "url", KEY, language="de", explanation=EXPLANATION, unit=UNIT)
    with pytest.raises(takedown.TakedownError, match="no such link"):
        draft(vault, fraud, "url", KEY, language="en", explanation=EXPLANATION, unit=UNIT)
    with vault.transaction() as db:
        assert db.execute("SELECT count(*) FROM takedowns").fetchone() == (0,)


# --- states ------------------------------------------------------------------------------------


def test_states_history_audit_and_across_reports(vault: Vault, pickup: Pickup) -> None:
    first, again, _fraud = report_ids(pickup)
    with pytest.raises(takedown.TakedownError, match="from none to sent"):
        takedown.set_state(vault, first, "url", KEY, "sent")
    takedown.draft(vault, first, "url", KEY, language="en", explanation=EXPLANATION, unit=UNIT)
    with pytest.raises(takedown.TakedownError, match="from drafted to removed"):
        takedown.set_state(vault, first, "url", KEY, "removed")
    takedown.set_state(vault, first, "url", KEY, "sent")
    takedown.set_state(vault, first, "url", KEY, "no_answer")
    takedown.set_state(vault, first, "url", KEY, "sent")
    takedown.set_state(vault, first, "url", KEY, "removed")
    with pytest.raises(takedown.TakedownError):
        takedown.set_state(vault, first, "url", KEY, "sent")
    # The state belongs to the link: the other report that gives it shows it removed.
    seen = {(t.kind, t.value): t for t in takedown.targets(vault, again)}
    assert seen[("url", KEY)].state == "removed" and seen[("url", KEY)].sent_on
    steps = takedown.history(vault, "url", KEY)
    assert [s.state for s in steps] == ["drafted", "sent", "no_answer", "sent", "removed"]
    assert steps[0].notice and steps[0].language == "en" and steps[0].report == first
    # The audit log names the report and the link's hash, never the link.
    logged = [e for e in audit.entries(vault) if e.event == "takedown"]
    assert [e.fields["state"] for e in logged] == [s.state for s in steps]
    assert all(e.fields["key"] == takedown.key_hash("url", KEY) for e in logged)
    assert "propaganda" not in json.dumps([e.fields for e in logged])
    assert audit.verify(vault).ok
    # A removed link can be notified again (the content came back).
    takedown.draft(vault, again, "url", KEY, language="ar", explanation=EXPLANATION, unit=UNIT)
    assert takedown.states(vault, [("url", KEY)]) == {("url", KEY): ("drafted", "")}


# --- templates ---------------------------------------------------------------------------------


def test_templates_keep_the_art16_placeholders(vault: Vault, pickup: Pickup) -> None:
    for body, why in [
        ("{url} {explanation} {legal_basis} {unit_name} {good_faith}", "unit_contact"),
        ("{url} {explanation} {legal_basis} {unit_name} {unit_contact} {good_faith} {x}", "x"),
        ("{url.__class__} {explanation}", "url.__class__"),
        ("{url} {", "lone"),
    ]:
        with pytest.raises(TemplateError, match=re.escape(why)):
            check(body)
    body = (
        "Telegram abuse form\n{url}\n{explanation}\n{legal_basis}\n"
        "{unit_name} <{unit_contact}>\n{good_faith}"
    )
    takedown.set_template(vault, "", "t.me", "en", body)
    first = report_ids(pickup)[0]
    text = takedown.draft(
        vault, first, "handle", "@recruiter_1", language="en", explanation=EXPLANATION, unit=UNIT
    )
    assert text.startswith("Telegram abuse form\nhttps://t.me/recruiter_1\n")
    # The Facebook link still gets the default template.
    other = takedown.draft(
        vault, first, "url", KEY, language="en", explanation=EXPLANATION, unit=UNIT
    )
    assert other.startswith("Notice of illegal content")
    with pytest.raises(takedown.TakedownError, match="missing placeholders"):
        takedown.set_template(vault, "terrorism", "", "en", "{url}")


# --- indicators --------------------------------------------------------------------------------


def test_indicators_export_stix_and_csv(vault: Vault, pickup: Pickup) -> None:
    first = report_ids(pickup)[0]
    takedown.draft(vault, first, "url", KEY, language="en", explanation=EXPLANATION, unit=UNIT)
    takedown.set_state(vault, first, "url", KEY, "sent")
    found = indicators.indicators(vault)
    bundle = indicators.to_stix(found, UNIT.name)
    parsed = stix2.parse(bundle, allow_custom=False, version="2.1")
    patterns = sorted(o.pattern for o in parsed.objects if o.type == "indicator")
    sha = hashlib.sha256(PHOTO[0]).hexdigest()
    assert f"[url:value = 'https://{KEY}']" in patterns
    assert "[user-account:account_login = 'recruiter_1']" in patterns
    assert "[user-account:account_login = 'shop_scam']" in patterns
    assert f"[file:hashes.'SHA-256' = '{sha}']" in patterns
    (unit,) = [o for o in parsed.objects if o.type == "identity"]
    assert unit.name == UNIT.name
    rows = list(csv.DictReader(io.StringIO(indicators.to_csv(found))))
    by_value = {row["value"]: row for row in rows}
    assert by_value[f"https://{KEY}"]["reports"] == "2"
    assert by_value[f"https://{KEY}"]["takedown_state"] == "sent"
    assert by_value[sha]["type"] == "sha256"
    # Never the reporter's data nor the report's text: no e-mail, no identity, no description.
    for text in (bundle, indicators.to_csv(found)):
        for value in [*REPORTER.values(), "Seen at", "Again", *report_ids(pickup)]:
            assert value not in text


def test_csv_cells_never_run_as_formulas() -> None:
    row = indicators.Indicator("url", "=cmd|' /C calc'!A0", "2025-01-01", "2025-01-01", 1, "")
    assert indicators.to_csv([row]).splitlines()[1].startswith("url,https://=cmd")
    handle = indicators.Indicator("handle", "@-danger", "2025-01-01", "2025-01-01", 1, "")
    assert "'-danger" in indicators.to_csv([handle])


# --- the status the reporter sees -----------------------------------------------------------------


def test_a_status_is_sealed_to_the_reporter_and_travels_as_a_reply(
    vault: Vault, pickup: Pickup, analyst: Analyst, tmp_path: Path
) -> None:
    first, _again, no_codename = report_ids(pickup)
    with pytest.raises(reporter_status.StatusError, match="kept no codename"):
        reporter_status.set_status(vault, no_codename, "received")
    with pytest.raises(reporter_status.StatusError):
        reporter_status.set_status(vault, first, "deleted")
    with pytest.raises(reporter_status.StatusError):
        reporter_status.set_status(vault, first, "closed", "a free text")
    reporter_status.set_status(vault, first, "being_reviewed")
    reporter_status.set_status(vault, first, "content_removed", "thanks")
    assert vault.pending().replies == 2
    made = make_reply_bundle(vault, tmp_path / "replies.bundle")
    assert made.replies == 2
    with BundleReader(
        tmp_path / "replies.bundle", [analyst.key.public().verify], "blagh-replies"
    ) as reader:
        items = reader.manifest["items"]
        assert [item["report"] for item in items] == [first, first]
        envelopes = [reader.read_item(item["id"]) for item in items]
    source = pickup.sources[0]
    assert source.secret_key is not None
    documents = [
        decode_document(open_envelope(envelope, [source.secret_key]), "status")
        for envelope in envelopes
    ]
    assert [(d["status"], d["message"]) for d in documents] == [
        ("being_reviewed", ""),
        ("content_removed", "thanks"),
    ]
    assert all(b"content_removed" not in envelope for envelope in envelopes)
    assert [s.sent for s in reporter_status.statuses(vault, first)] == [True, True]
    assert vault.pending().replies == 0
    logged = [e.fields for e in audit.entries(vault) if e.event == "reporter_status"]
    assert logged[-1] == {"report": first, "status": "content_removed", "message": "thanks"}


# --- the app -----------------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path, analyst: Analyst, pickup: Pickup) -> Iterator[Flask]:
    path = imported_vault(tmp_path, analyst, SERVER, pickup)
    made: Flask = create_app(WorkstationConfig(vault=path, unit=UNIT))
    try:
        yield made
    finally:
        made.extensions["workstation"].sessions.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return logged_in(app)


def token(client: FlaskClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found is not None
    return found.group(1)


def test_the_app_drafts_tracks_and_shows_states_in_connections(
    client: FlaskClient, pickup: Pickup
) -> None:
    first, again, _fraud = report_ids(pickup)
    page = f"/reports/{first}"
    form = {"csrf": token(client, page), "kind": "url", "value": KEY}
    drafted = client.post(
        f"{page}/notices", data={**form, "language": "fr", "explanation": EXPLANATION}
    )
    assert drafted.status_code == 303
    shown = client.get(page + "?lang=en").get_data(as_text=True)
    assert "notice drafted" in shown and UNIT.contact in shown and GOOD_FAITH["fr"] in shown
    assert client.post(f"{page}/notices/state", data={**form, "state": "sent"}).status_code == 303
    refused = client.post(f"{page}/notices/state", data={**form, "state": "sent"})
    assert refused.status_code == 400
    assert (
        client.post(f"{page}/notices/state", data={**form, "state": "removed"}).status_code == 303
    )
    # Reported again: the other report's page and the Connections view say it is removed.
    other = client.get(f"/reports/{again}?lang=en").get_data(as_text=True)
    assert "content removed" in other
    connections = client.get("/connections?lang=en").get_data(as_text=True)
    assert re.search(rf"{re.escape(KEY)}</code> <span[^>]*>content removed \(sent on", connections)
    assert "Takedown notice for" in client.get(page + "?lang=en").get_data(as_text=True)
    for lang, heading in (("fr", "Notifications de retrait"), ("ar", "طلبات الإزالة")):
        translated = client.get(f"{page}?lang={lang}")
        assert translated.status_code == 200 and heading in translated.get_data(as_text=True)
    stix = client.get("/indicators.stix.json")
    assert stix.status_code == 200
    stix2.parse(stix.get_data(as_text=True), allow_custom=False, version="2.1")
    assert client.get("/indicators.csv").get_data(as_text=True).startswith("type,value,")


def test_the_templates_page_refuses_an_incomplete_template(client: FlaskClient) -> None:
    listing = client.get("/notice-templates?lang=en")
    assert listing.status_code == 200 and "Notice of illegal content" in listing.get_data(
        as_text=True
    )
    bad = client.post(
        "/notice-templates",
        data={"csrf": token(client, "/"), "language": "en", "body": "{url} only"},
    )
    assert bad.status_code == 400 and "missing placeholders" in bad.get_data(as_text=True)


def test_unit_file(tmp_path: Path) -> None:
    path = tmp_path / "unit.toml"
    path.write_text(
        '[unit]\nname = "Unit"\ncontact = "u@example.ma"\n'
        '[legal_basis]\nterrorism = "art. 218-2"\n',
        encoding="utf-8",
    )
    assert load_unit(path) == Unit("Unit", "u@example.ma", {"terrorism": "art. 218-2"})
    path.write_text("[unit]\nname = 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="strings"):
        load_unit(path)
    path.write_text('[units]\nname = "x"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="unknown sections"):
        load_unit(path)


def test_only_admins_edit_templates(
    app: Flask,
    client: FlaskClient,
    bob_key_file: tuple[bytes, str],  # noqa: F811 (the fixture of test_workstation_cases)
) -> None:
    assert add_bob(client, bob_key_file).status_code == 303
    bob = login(app, "bob", OTHER_PASSPHRASE)
    assert bob.get("/notice-templates").status_code == 403
    body = "{url}\n{explanation}\n{legal_basis}\n{unit_name} {unit_contact}\n{good_faith}"
    form = {"category": "terrorism", "platform": "x.com", "language": "en", "body": body}
    refused = bob.post("/notice-templates", data={"csrf": token(bob, "/"), **form})
    assert refused.status_code == 403
    saved = client.post("/notice-templates", data={"csrf": token(client, "/"), **form})
    assert saved.status_code == 303
    listing = client.get("/notice-templates?lang=en").get_data(as_text=True)
    assert "terrorism · x.com · en" in listing


def test_serve_refuses_a_bad_unit_file(tmp_path: Path, analyst: Analyst) -> None:
    vault_path = make_vault(tmp_path, analyst, SERVER)
    bad = tmp_path / "unit.toml"
    bad.write_text("[unit\nname = ", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["workstation", "serve", "--vault", str(vault_path), "--unit-config", str(bad)]
    )
    assert result.exit_code == 1
    assert "cannot be read as TOML" in result.output
