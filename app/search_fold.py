"""How the console compares typed text with stored names: case and accents set aside.

A support agent types "zoe" for Zoë, "jose" for José, "GROSS" for Groß; the customer's own
spelling is kept everywhere it is shown, and only the search text and the query are folded.
"""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """``text`` case-folded with its accents taken off: "Zoë Groß" → "zoe gross".

    Letters that carry no separate accent mark (ø, ł, đ) stay as they are.
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", bare)
