"""The default texts of takedown notices, one per language, and the rules every template keeps.

A notice must carry what the EU Digital Services Act (Art. 16(2)) asks of a notice to a hosting
provider: the exact address of the content, a substantiated explanation of why it is illegal
(with its legal basis), the notifier's name and e-mail address, and a statement that the
notifier believes in good faith that the notice is accurate and complete.  Templates are kept
in the vault (``notice_templates``, per category and platform, ``''`` meaning any) so that a
unit can adapt them to a platform's own form; whatever an admin writes, a template must keep
every placeholder in :data:`REQUIRED`, so no edit can drop an element, and the good-faith
statement is filled in from :data:`GOOD_FAITH`, never typed into a template.

Nothing of the reporter's ever fills a placeholder: the notifier is the unit (from the
workstation's configuration), and the explanation is the analyst's.
"""

from __future__ import annotations

import string

LANGUAGES = ("ar", "fr", "en", "es")
"""The languages notices are written in: the platform's, not the analyst's."""

REQUIRED = frozenset(
    {"url", "explanation", "legal_basis", "unit_name", "unit_contact", "good_faith"}
)
"""The placeholders every template keeps (the Art. 16 elements)."""

ALLOWED = REQUIRED | {"platform", "day", "kind"}
"""Every placeholder a template may use."""

MAX_TEMPLATE = 10_000

GOOD_FAITH = {
    "en": (
        "I hereby state that I have a bona fide belief that the information and allegations "
        "contained in this notice are accurate and complete."
    ),
    "fr": (
        "Je déclare croire de bonne foi que les informations et allégations contenues dans la "
        "présente notification sont exactes et complètes."
    ),
    "ar": "أصرّح بأنني أعتقد بحسن نيّة أن المعلومات والادعاءات الواردة في هذا الإشعار دقيقة وكاملة.",
    "es": (
        "Declaro que creo de buena fe que la información y las alegaciones contenidas en esta "
        "notificación son exactas y completas."
    ),
}
"""The good-faith statement of DSA Art. 16(2)(d), in each notice language."""

DEFAULTS = {
    "en": """Notice of illegal content (Regulation (EU) 2022/2065, Article 16)

To: {platform}
Date: {day}

1. Exact location of the content ({kind}):
{url}

2. Why this content is illegal:
{explanation}

Legal basis: {legal_basis}

3. Notifier:
{unit_name}
{unit_contact}

4. Statement:
{good_faith}

We ask you to remove or disable access to this content without delay and to tell us what you
decided.
""",
    "fr": """Notification de contenu illicite (règlement (UE) 2022/2065, article 16)

À : {platform}
Date : {day}

1. Emplacement exact du contenu ({kind}) :
{url}

2. Pourquoi ce contenu est illicite :
{explanation}

Base légale : {legal_basis}

3. Auteur de la notification :
{unit_name}
{unit_contact}

4. Déclaration :
{good_faith}

Nous vous demandons de retirer ce contenu ou d'en rendre l'accès impossible sans délai, et de
nous faire connaître votre décision.
""",
    "ar": """إشعار بمحتوى غير قانوني (اللائحة الأوروبية 2022/2065، المادة 16)

إلى: {platform}
التاريخ: {day}

1. الموقع الدقيق للمحتوى ({kind}):
{url}

2. أسباب عدم قانونية هذا المحتوى:
{explanation}

الأساس القانوني: {legal_basis}

3. الجهة المُبلِّغة:
{unit_name}
{unit_contact}

4. تصريح:
{good_faith}

نطلب منكم إزالة هذا المحتوى أو تعطيل الوصول إليه دون تأخير، وإبلاغنا بقراركم.
""",
    "es": """Notificación de contenido ilícito (Reglamento (UE) 2022/2065, artículo 16)

A: {platform}
Fecha: {day}

1. Ubicación exacta del contenido ({kind}):
{url}

2. Por qué este contenido es ilícito:
{explanation}

Base jurídica: {legal_basis}

3. Notificante:
{unit_name}
{unit_contact}

4. Declaración:
{good_faith}

Les pedimos que retiren este contenido o bloqueen el acceso a él sin demora y que nos
comuniquen su decisión.
""",
}
"""The templates a new vault starts with (category and platform ``''``: any)."""

KIND_WORDS = {
    "en": {"url": "web address", "handle": "account"},
    "fr": {"url": "adresse web", "handle": "compte"},
    "ar": {"url": "عنوان ويب", "handle": "حساب"},
    "es": {"url": "dirección web", "handle": "cuenta"},
}


class TemplateError(ValueError):
    """A template that would make an incomplete notice, or that cannot be filled in."""


def check(body: str) -> None:
    """Refuse a template missing an Art. 16 element, using an unknown placeholder, or
    malformed (a lone brace)."""
    if not body.strip() or len(body) > MAX_TEMPLATE:
        raise TemplateError(f"a template holds 1 to {MAX_TEMPLATE} characters")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(body) if name is not None}
    except ValueError:
        raise TemplateError("a template has a lone { or }: write {{ or }} for a brace") from None
    unknown = fields - ALLOWED
    if unknown:
        raise TemplateError("unknown placeholders: " + ", ".join(sorted(unknown)))
    missing = REQUIRED - fields
    if missing:
        raise TemplateError("missing placeholders: " + ", ".join(sorted(missing)))
