"""Case work through the app: statuses, priority, assignee, notes, tags and their history;
several analysts with their own keys, the keyring, roles and TOTP; a version 1 vault upgraded.

A real vault (SQLCipher, argon2id at its lowest cost) and real pickup bundles.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse
from workstation_helpers import (
    PASSPHRASE,
    Analyst,
    Pickup,
    imported_vault,
    make_analyst,
    open_vault,
    workstation_app,
)

from blagh.sqlcipher import connect
from crypto.envelope import open_envelope
from crypto.keys import (
    ServerSigningKey,
    generate_analyst_key,
    open_key_file,
    seal_key_file,
    vault_key,
)
from journalist_interface import accounts, audit, cases, keyring, schema
from journalist_interface import search as inbox_search
from journalist_interface.errors import VaultError
from journalist_interface.vault import SCHEMA, Vault, VaultPaths

SERVER = ServerSigningKey.generate()
OTHER_PASSPHRASE = "another passphrase for bob"  # noqa: S105 (a test passphrase)


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Analyst:
    return make_analyst(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def bob_key_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    key = generate_analyst_key()
    data = seal_key_file(key, OTHER_PASSPHRASE, opslimit=1, memlimit=8 * 1024 * 1024)
    return data, key.public().to_line()


@pytest.fixture
def pickup(analyst: Analyst) -> Pickup:
    bundle = Pickup([analyst.key])
    source = bundle.source()
    first = bundle.report(source, danger=True, description="Someone is threatened right now.")
    bundle.message(first, source, "They wrote again tonight.")
    bundle.report(bundle.source(), category="harassment", description="Insults every day.")
    return bundle


@pytest.fixture
def vault_path(tmp_path: Path, analyst: Analyst, pickup: Pickup) -> Path:
    return imported_vault(tmp_path, analyst, SERVER, pickup)


@pytest.fixture
def app(vault_path: Path) -> Iterator[Flask]:
    yield from workstation_app(vault_path)


def login(app: Flask, name: str = "", passphrase: str = PASSPHRASE, code: str = "") -> FlaskClient:
    client = app.test_client()
    response = client.post("/login", data={"name": name, "passphrase": passphrase, "code": code})
    assert response.status_code == 303, text(response)
    return client


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return login(app)


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def csrf(client: FlaskClient, path: str = "/") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text(client.get(path)))
    assert found is not None
    return found.group(1)


def post(client: FlaskClient, path: str, **data: object) -> TestResponse:
    return client.post(path, data={"csrf": csrf(client), **data})


def report_id(pickup: Pickup, index: int = 0) -> str:
    return str(pickup.reports[index]["id"])


# --- status, priority, assignee ----------------------------------------------------------------


def test_statuses_and_closing_needs_a_reason(client: FlaskClient, pickup: Pickup) -> None:
    report = report_id(pickup)
    page = text(client.get(f"/reports/{report}?lang=en"))
    for status in ("new", "triaged", "in_progress", "escalated", "closed"):
        assert f'<option value="{status}"' in page
    for status in ("triaged", "in_progress", "escalated"):
        assert post(client, f"/reports/{report}/case", status=status).status_code == 303
    refused = post(client, f"/reports/{report}/case?lang=en", status="closed", reason="  ")
    assert refused.status_code == 400
    assert "a reason is required" in text(refused)
    closed = post(client, f"/reports/{report}/case", status="closed", reason="Passed to police")
    assert closed.status_code == 303
    page = text(client.get(f"/reports/{report}?lang=en"))
    assert "Passed to police" in page and "closed on" in page
    history = page[page.index('id="history"') :]
    for line in (
        "Status: New → Triaged",
        "Status: Triaged → In progress",
        "Status: In progress → Escalated",
        "Status: Escalated → Closed",
    ):
        assert line in history
    assert history.count(">analyst<") >= 4  # who did it: the vault's first analyst
    assert post(client, f"/reports/{report}/case", status="bogus").status_code == 400


def test_priority_is_automatic_until_set(client: FlaskClient, pickup: Pickup) -> None:
    urgent, ordinary = report_id(pickup, 0), report_id(pickup, 1)
    page = text(client.get(f"/reports/{urgent}?lang=en"))
    assert "Priority: <strong>Urgent</strong> (automatic)" in page
    post(client, f"/reports/{ordinary}/case", status="new", priority="2")
    page = text(client.get(f"/reports/{ordinary}?lang=en"))
    assert "Priority: <strong>High</strong>" in page and "(automatic)" not in page.split("Case")[1]
    assert "Priority: automatic → High" in page
    post(client, f"/reports/{ordinary}/case", status="new", priority="auto")
    assert "Priority: <strong>Normal</strong> (automatic)" in text(
        client.get(f"/reports/{ordinary}?lang=en")
    )
    assert post(client, f"/reports/{ordinary}/case", status="new", priority="9").status_code == 400


def test_assignee_must_be_an_analyst(client: FlaskClient, pickup: Pickup) -> None:
    report = report_id(pickup)
    assert post(
        client, f"/reports/{report}/case", status="new", assignee="analyst"
    ).status_code == (303)
    page = text(client.get(f"/reports/{report}?lang=en"))
    assert "Assigned to: <strong><bdi>analyst</bdi></strong>" in page
    assert "Assigned to <bdi>analyst</bdi>" in page  # the history
    refused = post(client, f"/reports/{report}/case?lang=en", status="new", assignee="mallory")
    assert refused.status_code == 400 and "There is no such analyst." in text(refused)
    post(client, f"/reports/{report}/case", status="new", assignee="")
    assert "No longer assigned" in text(client.get(f"/reports/{report}?lang=en"))


def test_an_unchanged_form_records_nothing(client: FlaskClient, pickup: Pickup) -> None:
    report = report_id(pickup, 1)
    post(client, f"/reports/{report}/case", status="new")
    assert "No change yet." in text(client.get(f"/reports/{report}?lang=en"))


# --- notes and tags ----------------------------------------------------------------------------


def test_notes_are_kept_escaped_and_only_their_author_deletes_them(
    client: FlaskClient, pickup: Pickup, vault_path: Path
) -> None:
    report = report_id(pickup)
    response = post(client, f"/reports/{report}/notes", note="Check <b>the</b> account & call.")
    assert response.status_code == 303
    page = text(client.get(f"/reports/{report}?lang=en"))
    assert "Check &lt;b&gt;the&lt;/b&gt; account &amp; call." in page
    assert "Note added" in page
    empty = post(client, f"/reports/{report}/notes?lang=en", note="   ")
    assert empty.status_code == 400 and "Write the note first." in text(empty)
    long = post(client, f"/reports/{report}/notes", note="x" * (cases.MAX_NOTE + 1))
    assert long.status_code == 400

    note_id = int(re.findall(r"/notes/(\d+)/delete", page)[0])
    # Someone else's note cannot be deleted (the form is not even shown to them).
    client.post("/logout", data={"csrf": csrf(client)})
    with Vault.open(vault_path, PASSPHRASE) as vault:
        other = vault.acting_as(vault.key, "someone")
        with pytest.raises(cases.CaseError, match="only the analyst who wrote"):
            cases.delete_note(other, report, note_id)
    client.post("/login", data={"passphrase": PASSPHRASE})
    deleted = post(client, f"/reports/{report}/notes/{note_id}/delete")
    assert deleted.status_code == 303
    page = text(client.get(f"/reports/{report}?lang=en"))
    assert "No note yet." in page
    assert "Note deleted:" in page and "account &amp; call." in page  # the history keeps it


def test_tags(client: FlaskClient, pickup: Pickup) -> None:
    report = report_id(pickup)
    assert post(client, f"/reports/{report}/tags", tag="  Scam  Network ").status_code == 303
    post(client, f"/reports/{report}/tags", tag="scam network")  # the same tag: no change
    post(client, f"/reports/{report}/tags", tag="حملة")
    page = text(client.get(f"/reports/{report}?lang=en"))
    assert page.count('class="tag" href="/?tag=scam+network"') == 1
    assert "Tag added: <bdi>scam network</bdi>" in page and "حملة" in page
    bad = post(client, f"/reports/{report}/tags?lang=en", tag="<script>")
    assert bad.status_code == 400 and "A tag is letters" in text(bad)
    post(client, f"/reports/{report}/tags/remove", tag="scam network")
    page = text(client.get(f"/reports/{report}?lang=en"))
    assert "Tag removed: <bdi>scam network</bdi>" in page
    assert 'href="/?tag=scam+network"' not in page


def test_the_old_case_form_still_saves_a_note(client: FlaskClient, pickup: Pickup) -> None:
    report = report_id(pickup)
    post(client, f"/reports/{report}/case", status="in_progress", notes="Call the platform.")
    page = text(client.get(f"/reports/{report}?lang=en"))
    assert '<option value="in_progress" selected>' in page and "Call the platform." in page


def test_changes_reach_the_audit_log(client: FlaskClient, pickup: Pickup, app: Flask) -> None:
    report = report_id(pickup)
    post(client, f"/reports/{report}/case", status="triaged")
    post(client, f"/reports/{report}/tags", tag="network")
    post(client, f"/reports/{report}/notes", note="Secret remark")
    client.post("/logout", data={"csrf": csrf(client)})
    with open_vault(app.extensions["workstation"].config.vault) as vault:
        logged = audit.entries(vault, report=report)
    events = [(entry.event, entry.analyst) for entry in logged]
    assert ("status", "analyst") in events
    assert ("tags", "analyst") in events and ("notes", "analyst") in events
    assert all("Secret remark" not in entry.line() for entry in logged)


# --- several analysts --------------------------------------------------------------------------


def add_bob(client: FlaskClient, key: tuple[bytes, str], role: str = "analyst") -> TestResponse:
    return client.post(
        "/analysts?lang=en",
        data={
            "csrf": csrf(client, "/analysts"),
            "name": "bob",
            "role": role,
            "passphrase": OTHER_PASSPHRASE,
            "key_file": (BytesIO(key[0]), "bob.key"),
        },
        content_type="multipart/form-data",
    )


def test_a_second_analyst_logs_in_with_their_own_key(
    client: FlaskClient, app: Flask, vault_path: Path, bob_key_file: tuple[bytes, str]
) -> None:
    response = add_bob(client, bob_key_file)
    assert response.status_code == 303, text(response)
    page = text(client.get("/analysts?lang=en"))
    assert "<bdi>bob</bdi>" in page
    assert (vault_path / "keyring.json").is_file()
    assert (vault_path / "analysts" / "bob.key").read_bytes() == bob_key_file[0]
    assert (vault_path / "analysts" / "analyst.key").is_file()

    bob = login(app, "bob", OTHER_PASSPHRASE)  # while the first analyst is still logged in
    assert "(<bdi>bob</bdi>)" in text(bob.get("/?lang=en"))
    assert bob.get("/analysts").status_code == 403  # not an admin
    wrong = app.test_client().post(
        "/login", data={"name": "bob", "passphrase": PASSPHRASE}
    )  # the first analyst's passphrase does not open bob's key
    assert wrong.status_code == 403
    unknown = app.test_client().post("/login", data={"name": "eve", "passphrase": PASSPHRASE})
    assert unknown.status_code == 403

    # Each analyst acts under their own name.
    bob.post(
        f"/reports/{first_report(client)}/notes",
        data={"csrf": csrf(bob), "note": "Bob's remark"},
    )
    page = text(client.get(f"/reports/{first_report(client)}?lang=en"))
    assert "<bdi>bob</bdi>" in page

    # Both log out: the vault is locked; bob alone opens it again, with his key.
    bob.post("/logout", data={"csrf": csrf(bob)})
    client.post("/logout", data={"csrf": csrf(client)})
    with Vault.open(vault_path, OTHER_PASSPHRASE, "bob") as vault:
        assert vault.analyst == "bob"
        assert {a.name for a in accounts.accounts(vault)} == {"analyst", "bob"}


def first_report(client: FlaskClient) -> str:
    found = re.search(r'href="/reports/([0-9a-f]{32})', text(client.get("/")))
    assert found is not None
    return found.group(1)


def test_adding_an_analyst_checks_everything(
    client: FlaskClient, bob_key_file: tuple[bytes, str], analyst: Analyst
) -> None:
    def add(**changes: object) -> TestResponse:
        data: dict[str, object] = {
            "csrf": csrf(client, "/analysts"),
            "name": "bob",
            "role": "analyst",
            "passphrase": OTHER_PASSPHRASE,
            "key_file": (BytesIO(bob_key_file[0]), "bob.key"),
            **changes,
        }
        return client.post("/analysts?lang=en", data=data, content_type="multipart/form-data")

    assert "does not open this key file" in text(add(passphrase="guess"))  # noqa: S106
    assert "lower-case letters" in text(add(name="Bob Smith"))
    assert "lower-case letters" in text(add(name="../x"))
    own = add(
        name="again",
        passphrase=PASSPHRASE,
        key_file=(BytesIO(analyst.key_file.read_bytes()), "a.key"),
    )
    assert own.status_code == 400 and "already belongs" in text(own)
    assert add().status_code == 303
    assert "This name is taken" in text(add())


def test_removing_an_analyst_changes_the_vault_key(
    client: FlaskClient, app: Flask, vault_path: Path, bob_key_file: tuple[bytes, str]
) -> None:
    add_bob(client, bob_key_file, role="admin")
    bob = login(app, "bob", OTHER_PASSPHRASE)
    assert bob.get("/analysts").status_code == 200
    old_ring = (vault_path / "keyring.json").read_bytes()
    refused = bob.post("/analysts/bob/remove?lang=en", data={"csrf": csrf(bob)})
    assert refused.status_code == 400 and "your own account" in text(refused)
    removed = client.post("/analysts/bob/remove", data={"csrf": csrf(client)})
    assert removed.status_code == 303
    assert bob.get("/").status_code == 303  # bob's session ended
    assert not (vault_path / "analysts" / "bob.key").exists()
    assert "(removed)" in text(client.get("/analysts?lang=en"))
    client.post("/logout", data={"csrf": csrf(client)})

    # The old keyring's key (which bob could have kept) no longer opens the database.
    bob_key = open_key_file(bob_key_file[0], OTHER_PASSPHRASE)
    old_master = open_envelope(
        bytes.fromhex(json.loads(old_ring)["master"]), [bob_key.encryption_secret]
    )
    with pytest.raises(Exception, match="wrong database key"):
        connect(vault_path / "vault.db", old_master).close()
    failed = app.test_client().post("/login", data={"name": "bob", "passphrase": OTHER_PASSPHRASE})
    assert failed.status_code == 403
    login(app).post("/logout")  # the first analyst still opens it


def test_the_last_admin_stays(client: FlaskClient) -> None:
    refused = client.post(
        "/analysts/analyst/role?lang=en", data={"csrf": csrf(client), "role": "analyst"}
    )
    assert refused.status_code == 400 and "at least one admin" in text(refused)


def test_a_crash_between_rekey_and_keyring_leaves_a_vault_that_opens(
    vault_path: Path, bob_key_file: tuple[bytes, str]
) -> None:
    with open_vault(vault_path) as vault:
        accounts.add_analyst(vault, "bob", "analyst", bob_key_file[0], OTHER_PASSPHRASE)
        members = [("analyst", vault.key.public())]
        new = b"\x07" * 32
        keyring.write(vault_path, new, members)  # written, applied, but never committed
        vault.rekey(new)
    assert keyring.pending_path(vault_path).exists()
    with open_vault(vault_path) as vault:
        assert vault.database_key == new


# --- TOTP --------------------------------------------------------------------------------------


def test_totp_set_up_login_and_no_replay(client: FlaskClient, app: Flask) -> None:
    assert post(client, "/account/totp", action="begin").status_code == 303
    page = text(client.get("/account?lang=en"))
    secret = re.search(r'<code dir="ltr" class="secret">([A-Z2-7 ]+)</code>', page)
    assert secret is not None
    key = secret.group(1).replace(" ", "")
    assert "otpauth://totp/" in page
    wrong = post(client, "/account/totp?lang=en", action="confirm", code="000000")
    assert wrong.status_code == 400 and "Wrong code" in text(wrong)
    totp = pyotp.TOTP(key)
    moment = time.time()
    confirmed = totp.at(moment)
    assert post(client, "/account/totp", action="confirm", code=confirmed).status_code == 303
    assert "On: logging in needs" in text(client.get("/account?lang=en"))

    other = app.test_client()
    needed = other.post("/login?lang=en", data={"passphrase": PASSPHRASE})
    assert needed.status_code == 403 and "6-digit code" in text(needed)
    # The code that confirmed the set-up is used up: the next step's code logs in.
    used = other.post("/login?lang=en", data={"passphrase": PASSPHRASE, "code": confirmed})
    assert used.status_code == 403 and "already used" in text(used)
    later = totp.at(moment + 30)
    assert other.post("/login", data={"passphrase": PASSPHRASE, "code": later}).status_code == 303
    replay = app.test_client().post("/login", data={"passphrase": PASSPHRASE, "code": later})
    assert replay.status_code == 403


def test_totp_window() -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    now = time.time()
    step = int(now // 30)
    assert accounts.matching_step(secret, totp.at(now), 0, now) == step
    assert accounts.matching_step(secret, totp.at(now - 30), 0, now) == step - 1
    assert accounts.matching_step(secret, totp.at(now - 90), 0, now) is None
    assert accounts.matching_step(secret, totp.at(now), step, now) is None  # used
    assert accounts.matching_step(secret, "12345", 0, now) is None
    assert accounts.matching_step(secret, "abcdef", 0, now) is None


# --- upgrading a version 1 vault ---------------------------------------------------------------


def test_a_version_1_vault_is_upgraded_in_place(tmp_path: Path, analyst: Analyst) -> None:
    """A vault as the first workstation made it (notes column, three statuses) opens, keeps its
    data, gains case work and search."""
    path = tmp_path / "old"
    path.mkdir(mode=0o700)
    (path / "analyst.key").write_bytes(analyst.key_file.read_bytes())
    salt = bytes(range(16))
    (path / "vault.salt").write_bytes(salt)
    db = connect(path / "vault.db", vault_key(analyst.key, salt))
    for statement in [p for p in SCHEMA.split(";") if p.strip()]:
        db.execute(statement)
    settings = {
        "schema": "1",
        "server_key": SERVER.public().to_line(),
        "analyst": analyst.key.public().to_line(),
        "analysts": "[]",
        "analysts_day": "",
    }
    db.executemany("INSERT INTO settings VALUES (?, ?)", settings.items())
    db.execute("INSERT INTO sources VALUES ('s', NULL)")
    db.execute(
        "INSERT INTO reports (id, source_id, day, received, category, description, links,"
        " status, notes) VALUES (?, 's', '2025-01-02', 1, 'fraud', 'A fake shop',"
        " '[\"https://www.shop.example/\"]', 'in_progress', 'Old note')",
        ("a" * 32,),
    )
    db.execute(
        "INSERT INTO items (id, report_id, kind, day, seq, position, text, pickup)"
        " VALUES (?, ?, 'message', '2025-01-03', 2, 1, 'zanzibar', 'p')",
        ("b" * 32, "a" * 32),
    )
    db.execute("INSERT INTO search (report_id, body) VALUES (?, 'A fake shop')", ("a" * 32,))
    db.close()

    with Vault.open(path, PASSPHRASE) as vault:
        case = cases.case(vault, "a" * 32)
        assert case is not None and case.status == "in_progress"
        assert [note.text for note in case.notes] == ["Old note"]
        page = inbox_search.inbox(vault, inbox_search.InboxQuery(text="zanzibar"))
        assert [row.id for row in page.rows] == ["a" * 32]
        assert page.rows[0].snippets[0].kind == "message"
        note = inbox_search.inbox(vault, inbox_search.InboxQuery(text="old note"))
        assert note.total == 1
        assert vault.analyst == schema.FIRST_ANALYST
        upgraded = vault.report("a" * 32)
        assert upgraded is not None and upgraded.ref == "2025/0001"  # version 3
        mine = inbox_search.inbox(vault, inbox_search.InboxQuery(sort="activity")).rows[0]
        assert mine.unread and mine.preview == "A fake shop"
    raw = connect(path / "vault.db", vault_key(analyst.key, salt))
    assert raw.execute("SELECT value FROM settings WHERE name = 'schema'").fetchone() == (
        str(schema.LATEST),
    )
    raw.close()


def test_a_newer_vault_is_refused(vault_path: Path, analyst: Analyst) -> None:
    salt = VaultPaths(vault_path).salt_file.read_bytes()
    db = connect(vault_path / "vault.db", vault_key(analyst.key, salt))
    db.execute("UPDATE settings SET value = '99' WHERE name = 'schema'")
    db.close()
    with pytest.raises(VaultError, match="not a vault this version"):
        open_vault(vault_path)


def test_search_index_follows_deletions(vault_path: Path, pickup: Pickup) -> None:
    """Deleting a report (retention) takes its rows out of the index and its case data too."""
    report = report_id(pickup, 1)
    with open_vault(vault_path) as vault:
        cases.add_note(vault, report, "unique-word-here")
        cases.add_tag(vault, report, "gone")
        with vault.transaction() as db:
            (num,) = db.execute("SELECT num FROM reports WHERE id = ?", (report,)).fetchone()
            before = db.execute(
                "SELECT count(*) FROM search WHERE rowid >> 20 = ?", (num,)
            ).fetchone()[0]
            assert before >= 2
            db.execute("DELETE FROM items WHERE report_id = ?", (report,))
            db.execute("DELETE FROM reports WHERE id = ?", (report,))
            for table in ("notes", "tags", "case_history", "report_keys"):
                assert db.execute(
                    f"SELECT count(*) FROM {table} WHERE report_num = ?",  # noqa: S608
                    (num,),
                ).fetchone() == (0,)
            assert db.execute(
                "SELECT count(*) FROM search WHERE rowid >> 20 = ?", (num,)
            ).fetchone() == (0,)


def test_sqlite_cannot_read_the_keyring_master(vault_path: Path) -> None:
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(vault_path / "vault.db").execute("SELECT * FROM analysts").fetchall()


def test_forms_from_browsers_that_send_origin_null(app: Flask, pickup: Pickup) -> None:
    """Under the no-referrer policy a browser sends ``Origin: null`` with a form: the fetch
    metadata then decides (a real Chromium logs in this way)."""
    client = app.test_client()
    same = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    response = client.post("/login", data={"passphrase": PASSPHRASE}, headers=same)
    assert response.status_code == 303
    path = f"/reports/{report_id(pickup)}/notes"
    foreign = {"Origin": "null", "Sec-Fetch-Site": "cross-site"}
    assert client.post(
        path, data={"csrf": csrf(client), "note": "x"}, headers=foreign
    ).status_code == (403)
    assert (
        client.post(path, data={"csrf": csrf(client), "note": "x"}, headers=same).status_code == 303
    )


def test_commands_open_the_vault_as_another_analyst(
    vault_path: Path, tmp_path: Path, bob_key_file: tuple[bytes, str]
) -> None:
    from click.testing import CliRunner

    from blagh.bundles import BundleReader
    from blagh.cli import cli
    from crypto.keys import AnalystPublicKey

    with open_vault(vault_path) as vault:
        accounts.add_analyst(vault, "bob", "analyst", bob_key_file[0], OTHER_PASSPHRASE)
    secret = tmp_path / "bob.pass"
    secret.write_text(OTHER_PASSPHRASE + "\n")
    out = tmp_path / "replies.bundle"
    args = ["workstation", "replies", "--vault", str(vault_path), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--analyst", "bob", "--passphrase-file", str(secret)])
    assert result.exit_code == 0, result.output
    bob = AnalystPublicKey.from_line(bob_key_file[1])
    with BundleReader(out, [bob.verify], "blagh-replies") as bundle:  # signed with bob's key
        assert bundle.manifest["acknowledged"]
    other = ["workstation", "replies", "--vault", str(vault_path), "--out", str(tmp_path / "b2")]
    wrong = CliRunner().invoke(cli, [*other, "--analyst", "eve", "--passphrase-file", str(secret)])
    assert wrong.exit_code != 0 and "wrong passphrase" in wrong.output, wrong.output
