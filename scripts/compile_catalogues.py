"""Compile the report's gettext catalogues: every expectations/locale/*/LC_MESSAGES/*.po -> .mo.

Run after editing a .po (for example after adding the Vietnamese texts of a new check):
    .venv/bin/python scripts/compile_catalogues.py
The .mo files are committed (the package is installed without a build step of its own);
tests/test_report_i18n.py fails when one differs from what its .po compiles to.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).resolve().parent.parent / "expectations" / "locale"


def compiled(po: Path) -> bytes:
    """The .mo bytes of one .po (fuzzy entries left out, as msgfmt does)."""
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=po.parent.parent.name, domain=po.stem)
    out = io.BytesIO()
    write_mo(out, catalog, use_fuzzy=False)
    return out.getvalue()


def main() -> int:
    for po in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/*.po")):
        po.with_suffix(".mo").write_bytes(compiled(po))
        print(f"compiled {po.relative_to(LOCALE_DIR.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
