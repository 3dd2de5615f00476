"""How the console compares typed text with stored names: case and accents set aside.

A support agent types "zoe" for Zoë, "jose" for José, "GROSS" for Groß; the customer's own
spelling is kept everywhere it is shown, and only the search text and the query are folded.
"""

from __future__ import annotations

import unicodedata

# Apostrophes as keyboards type them: an iPhone's O’Brien is the O'Brien stored from a checkout.
APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})


def fold(text: str) -> str:
    """``text`` case-folded with its accents taken off and its apostrophes made one: "Zoë Groß"
    → "zoe gross", "O’Brien" → "o'brien".

    Letters that carry no separate accent mark (ø, ł, đ) stay as they are.
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(APOSTROPHES))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", bare)
