"""The report's languages: gettext catalogues (Babel), Vietnamese by default, English by a setting.

Two domains under `expectations/locale/<lang>/LC_MESSAGES/`:
- `report`: the pages' own words (headers, help texts, labels), msgids in English;
- `checks`: one text per check and reason, keyed by id (`check.<id>.name`, `check.<id>.explain`,
  `check.<id>.fix`, `reason.<code>`), so that a new check in checks.yaml needs only new entries here.

The `.po` files are the source; the `.mo` files next to them are compiled from them
(`python scripts/compile_catalogues.py`) and committed, because the package is installed without a
build step; tests/test_report_i18n.py fails when a `.mo` is older than its `.po`.
The language comes from the argument, else HEALTHBOOK_REPORT_LANGUAGE, else "vi".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

from babel.support import NullTranslations, Translations

from transforms.core.resources import package_path

LOCALE_DIR = package_path("expectations", "locale")
LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
LANGUAGE_ENV = "HEALTHBOOK_REPORT_LANGUAGE"
TEXT_KINDS = ("name", "explain", "fix")


def resolve_language(language: str | None = None) -> str:
    """The report language: the argument, else the setting, else Vietnamese; anything unknown is refused."""
    chosen = (language or os.environ.get(LANGUAGE_ENV) or DEFAULT_LANGUAGE).strip().lower()
    if chosen not in LANGUAGES:
        raise ValueError(f"report language {chosen!r} is not one of {', '.join(LANGUAGES)}")
    return chosen


@cache
def translations(language: str, domain: str = "report") -> NullTranslations:
    """The compiled catalogue of one language and domain (English `report` has none: msgids are English)."""
    found = Translations.load(str(LOCALE_DIR), [language], domain)
    return found


@dataclass(frozen=True)
class Texts:
    """What the report says, in one language: `gettext` for its words, `check`/`reason` for the checks."""

    language: str

    def gettext(self, message: str) -> str:
        return translations(self.language, "report").gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return translations(self.language, "report").ngettext(singular, plural, n)

    def _keyed(self, key: str) -> str | None:
        text = translations(self.language, "checks").gettext(key)
        return None if text == key or not text.strip() else text

    def check(self, check_id: str, kind: str, fallback: str = "") -> str:
        """A check's name, explanation or fix; the checks.yaml description when no text exists yet
        (a new check shows in English until the lead adds its Vietnamese text, never breaks)."""
        assert kind in TEXT_KINDS, kind
        if check_id.startswith("ingest."):  # ingest findings: check_id = "ingest.<reason>"
            reason = check_id.removeprefix("ingest.")
            if kind == "name":
                return self.reason(reason)
            return self._keyed(f"reason.{reason}.{kind}") or self.reason(reason)
        return self._keyed(f"check.{check_id}.{kind}") or fallback or check_id

    def reason(self, code: str | None) -> str:
        """A reason code in words (the code itself when unknown: nothing is hidden)."""
        if code is None:
            return ""
        if (text := self._keyed(f"reason.{code}")) is not None:
            return text
        from transforms.core import reasons

        for table in (
            reasons.FILE_REASONS,
            reasons.ENCOUNTER_REASONS,
            reasons.WARNING_REASONS,
            reasons.FHIR_REASONS,
        ):
            if code in table:
                return table[code]
        return code


def texts(language: str | None = None) -> Texts:
    return Texts(resolve_language(language))


def missing_check_texts(check_ids: list[str], reason_codes: list[str], language: str = "vi") -> list[str]:
    """The catalogue keys `language` lacks for these checks and reasons (empty when complete)."""
    t = Texts(language)
    missing = [f"check.{c}.{k}" for c in check_ids for k in TEXT_KINDS if t._keyed(f"check.{c}.{k}") is None]
    missing += [f"reason.{r}" for r in reason_codes if t._keyed(f"reason.{r}") is None]
    return missing
