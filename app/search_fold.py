"""How the console compares typed text with stored names: case and accents set aside.

A support agent types "zoe" for Zoë, "jose" for José, "GROSS" for Groß; the customer's own
spelling is kept everywhere it is shown, and only the search text and the query are folded.
"""

from __future__ import annotations

import functools
import unicodedata

# Apostrophes as keyboards type them: an iPhone's O’Brien is the O'Brien stored from a checkout.
APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})
# Scripts whose marks are accents people leave off when they type. Elsewhere a mark is part of the
# letter: Japanese ガ is not カ, and Devanagari's virama makes a different syllable.
ACCENTED_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")


def fold(text: str) -> str:
    """``text`` case-folded with its accents taken off and its apostrophes made one: "Zoë Groß"
    → "zoe gross", "O’Brien" → "o'brien".

    Letters that carry no separate accent mark (ø, ł, đ) stay as they are, and so do the marks
    of other scripts (see ``ACCENTED_SCRIPTS``).
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(APOSTROPHES))
    kept, base = [], ""
    for char in decomposed:
        if unicodedata.combining(char):
            if not _accented(base):
                kept.append(char)
            continue
        kept.append(char)
        base = char
    return unicodedata.normalize("NFC", "".join(kept))


@functools.lru_cache(maxsize=4096)
def _accented(letter: str) -> bool:
    """Whether ``letter`` belongs to a script whose marks are accents (``ACCENTED_SCRIPTS``)."""
    return bool(letter) and unicodedata.name(letter, "").startswith(ACCENTED_SCRIPTS)
