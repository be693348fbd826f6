"""Takedown and the status the reporter sees, through the whole loop (test_loop.py's set-up).

A reporter sends a link without JavaScript and keeps a codename; the transfer station picks the
report up; the analyst imports it, drafts a takedown notice for the link (the unit as notifier),
records it sent then removed, and sets the reporter-visible status "content removed" with a
message; the reply bundle carries the sealed status to the server, which stores one more reply
envelope and nothing readable; the reporter logs in and reads "content removed" and the day, in
French and in Arabic.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

from babel.dates import format_date
from form_browser import CODENAME, FORM_TOKEN, MESSAGE_FORM
from test_loop import Site, blagh, csrf, ok, site  # noqa: F401 (site: the loop's fixture)
from test_source_gunicorn import Browser, scan_for, submit_report
from workstation_helpers import PASSPHRASE

from journalist_interface.app import create_app
from journalist_interface.config import WorkstationConfig, load_unit
from source_interface.app import open_store

LINK = "https://www.instagram.com/p/Cx9_removed/?igsh=tracking"
KEY = "instagram.com/p/cx9_removed"


def test_a_takedown_status_reaches_the_reporter(site: Site, tmp_path: Path) -> None:  # noqa: F811
    prefix = "mk" + secrets.token_hex(6)
    description = f"{prefix}_description"

    # 1. The reporter, without JavaScript, keeps a codename.
    reporter = Browser(site.source.port)
    sent = submit_report(reporter, description, links=LINK, keep_codename="yes")
    assert (sent.status, sent.location()) == (303, "/report/codename")
    page = reporter.get("/report/codename").text
    shown, form = CODENAME.search(page), FORM_TOKEN.search(page)
    assert shown and form
    codename = shown.group(1)
    typed = reporter.post(
        "/report/codename", [("form_token", form.group(1)), ("codename", codename)]
    )
    assert typed.status == 303
    (report_id,) = MESSAGE_FORM.findall(reporter.get("/followup").text)

    # 2. Pickup and import.
    usb = tmp_path / "usb"
    usb.mkdir()
    pickup = ("pickup", "--url", site.pickup_url, "--token", site.token, "--out", usb)
    ok(blagh(*pickup, "--server-key", site.server_key.to_line()))
    (bundle,) = usb.glob("pickup-*.bundle")
    vault = tmp_path / "vault"
    init = ("--key-file", site.key_file, "--server-key", site.server_key.to_line())
    ok(blagh("workstation", "init", "--vault", vault, *init, "--passphrase-file", site.passphrase))
    ok(
        blagh(
            "workstation", "import", "--vault", vault, "--passphrase-file", site.passphrase, bundle
        )
    )

    # 3. The analyst: a notice for the link, sent, removed; the status the reporter sees.
    unit_file = tmp_path / "unit.toml"
    unit_file.write_text(
        '[unit]\nname = "Unité cybercriminalité"\ncontact = "retraits@unit.example.ma"\n'
        '[legal_basis]\nfraud = "Code pénal marocain, art. 540"\n',
        encoding="utf-8",
    )
    app = create_app(WorkstationConfig(vault=vault, unit=load_unit(unit_file)))
    try:
        client = app.test_client()
        assert client.post("/login", data={"passphrase": PASSPHRASE}).status_code == 303
        page_path = f"/reports/{report_id}"
        target = {"csrf": csrf(client, page_path), "kind": "url", "value": KEY}
        explanation = "A fake shop post that takes payments and never delivers: a fraud."
        drafted = client.post(
            f"{page_path}/notices",
            data={**target, "language": "fr", "explanation": explanation},
        )
        assert drafted.status_code == 303
        report_page = client.get(page_path + "?lang=en").get_data(as_text=True)
        notice = re.search(r'<pre dir="auto" class="notice-text">(.*?)</pre>', report_page, re.S)
        assert notice is not None
        assert "retraits@unit.example.ma" in notice.group(1) and LINK in notice.group(1)
        assert description not in notice.group(1)
        for state in ("sent", "removed"):
            moved = client.post(f"{page_path}/notices/state", data={**target, "state": state})
            assert moved.status_code == 303
        status = client.post(
            f"{page_path}/reporter-status",
            data={"csrf": target["csrf"], "status": "content_removed", "message": "thanks"},
        )
        assert status.status_code == 303
        report_page = client.get(page_path + "?lang=en").get_data(as_text=True)
        assert 'data-state="removed"' in report_page
        assert "waits for the next reply bundle" in report_page
    finally:
        app.extensions["workstation"].sessions.close()

    # 4. The reply bundle carries the status as one reply; the server stores it sealed.
    replies = usb / "replies.bundle"
    made = ok(
        blagh(
            "workstation", "replies", "--vault", vault, "--out", replies,
            "--passphrase-file", site.passphrase,
        )
    )  # fmt: skip
    assert made.startswith(f"Wrote {replies}: 1 reply(ies), 1 acknowledgement(s)")
    delivered = ok(blagh("deliver", replies, "--url", site.pickup_url, "--token", site.token))
    assert "1 reply stored" in delivered
    with contextlib.closing(open_store(site.data_dir)) as store, store.index.transaction() as db:
        kinds = sorted(row[0] for row in db.execute("SELECT kind FROM items"))
    assert kinds == ["fields", "reply"]
    # Nothing says "content_removed" in clear anywhere on the server's disk.
    assert scan_for("content_removed", [site.data_dir.path]) == {}

    # 5. The reporter reads the status and its day, in French then in Arabic.
    visitor = Browser(site.source.port)
    signed_in = visitor.post(
        "/login", [("form_token", visitor.token("/login")), ("codename", codename)]
    )
    assert signed_in.status == 303
    today = datetime.now(UTC).date()
    french = visitor.get("/followup?lang=fr").text
    day_fr = format_date(today, format="long", locale="fr")
    assert f"Statut\u00a0: Contenu retiré, depuis le {day_fr}" in french
    assert "Merci pour votre signalement." in french
    arabic = visitor.get("/followup?lang=ar").text
    assert (
        "تمت إزالة المحتوى" in arabic and format_date(today, format="long", locale="ar") in arabic
    )
    # A status is not an answer from the analysts.
    english = visitor.get("/followup?lang=en").text
    assert "Status: Content removed, since" in english
    assert "Answer from the analysts" not in english
