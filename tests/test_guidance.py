"""The sextortion guidance page (issue 14): in every language, linked from that category on the
landing page and the report form, with its advice and the configured emergency numbers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from source_helpers import Site, open_site, page_text

GUIDE = "/help/sextortion"

# Per language: the title and the advice the issue asks for (do not pay, do not delete the
# conversation, keep screenshots, block after saving, talk to someone you trust).
TEXT = {
    "en": [
        "Sextortion: what to do now",
        "Do not pay",
        "Do not delete the conversation",
        "Keep screenshots",
        "Block them after saving everything",
        "Talk to someone you trust",
    ],
    "fr": [
        "Sextorsion : que faire maintenant",
        "Ne payez pas",
        "Ne supprimez pas la conversation",
        "Gardez des captures d’écran",
        "Bloquez la personne après avoir tout sauvegardé",
        "Parlez-en à une personne de confiance",
    ],
    "ar": [
        "الابتزاز الجنسي: ماذا تفعل الآن",
        "لا تدفع",
        "لا تحذف المحادثة",
        "احتفظ بلقطات الشاشة",
        "احظره بعد حفظ كل شيء",
        "تحدّث إلى شخص تثق به",
    ],
    "es": [
        "Sextorsión: qué hacer ahora",
        "No pague",
        "No borre la conversación",
        "Guarde capturas de pantalla",
        "Bloquee la cuenta después de guardarlo todo",
        "Hable con alguien de confianza",
    ],
}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path) as site:
        yield site


@pytest.mark.parametrize("language", ["en", "fr", "ar", "es"])
def test_the_guide_in_each_language(site: Site, language: str) -> None:
    client = site.client()
    response = client.get(f"{GUIDE}?lang={language}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'<html lang="{language}"' in html
    text = page_text(response)
    for phrase in TEXT[language]:
        assert phrase in text, phrase
    # The emergency numbers (the default: 112) are in the page itself, not only its header.
    assert 'href="tel:112"' in html[html.index("<main") :]


@pytest.mark.parametrize("language", ["en", "fr", "ar", "es"])
@pytest.mark.parametrize("page", ["/", "/report"])
def test_the_sextortion_category_links_to_the_guide(site: Site, language: str, page: str) -> None:
    client = site.client()
    client.get(f"/?lang={language}")
    html = client.get(page).get_data(as_text=True)
    links = re.findall(r'<a href="([^"]+)"[^>]*data-guide="([a-z_]+)"', html)
    assert links == [(GUIDE, "sextortion")]
    # Next to its category: after the sextortion label and before the next category's.
    label = TEXT[language][0].split(":")[0].strip()
    position = html.index(GUIDE)
    assert html.rfind("sextortion" if page == "/report" else label, 0, position) != -1
    if page == "/report":
        # The form is not left: the guide opens beside it.
        assert re.search(rf'href="{GUIDE}" target="_blank" rel="noopener"', html)
