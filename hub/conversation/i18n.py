"""Translations of the command layer's replies: gettext catalogs (.po) read with Babel.

The catalogs live as sources in ``locale/<lang>/LC_MESSAGES/hub.po`` and are compiled in
memory when first needed, so no compiled ``.mo`` file is kept in the repository. English is
the source language: its texts are the message ids. Reply texts are written with named
placeholders (``_("{name} is on.").format(name=...)``) so that a translation may reorder them.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from babel.support import NullTranslations

_LOGGER = logging.getLogger(__name__)

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "hub"
SOURCE_LANGUAGE = "en"

Gettext = Callable[[str], str]


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "mark, translate later"
    """Mark ``message`` for extraction without translating it here."""
    return message


def available_languages() -> tuple[str, ...]:
    """The languages replies can be given in: English plus every shipped catalog."""
    found = {SOURCE_LANGUAGE}
    if LOCALE_DIR.is_dir():
        found.update(
            path.name
            for path in LOCALE_DIR.iterdir()
            if (path / "LC_MESSAGES" / f"{DOMAIN}.po").is_file()
        )
    return tuple(sorted(found))


def normalise_language(language: str | None) -> str:
    """``de_DE``, ``de-at`` and ``DE`` all mean ``de``; unknown languages mean English."""
    if not language:
        return SOURCE_LANGUAGE
    code = language.replace("-", "_").split("_", 1)[0].lower()
    return code if code in available_languages() else SOURCE_LANGUAGE


@functools.cache
def translations(language: str) -> NullTranslations:
    """The catalog for ``language`` (English, or a broken catalog: the English texts)."""
    # Babel is imported here, not at the top: loading hub.yaml must not pay for it.
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import NullTranslations, Translations

    language = normalise_language(language)
    if language == SOURCE_LANGUAGE:
        return NullTranslations()
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    try:
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language, domain=DOMAIN)
        compiled = io.BytesIO()
        write_mo(compiled, catalog)  # fuzzy entries are left out, as msgfmt does
        compiled.seek(0)
        return Translations(fp=compiled, domain=DOMAIN)
    except Exception:  # a broken catalog must not silence the hub: fall back to English
        _LOGGER.exception("cannot read the %s catalog %s; answering in English", language, path)
        return NullTranslations()


def gettext_for(language: str) -> Gettext:
    """The ``_`` function for ``language``."""
    return translations(language).gettext
