"""What every output format shares, in a module that imports nothing heavy: the format names (so the
command line can offer them without loading the writers, and ``monitor --help`` stays fast) and the rules
that keep stored text from being turned against its reader — a spreadsheet evaluating a CSV cell as a
formula, a terminal obeying an escape sequence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

EXPORT_FORMATS = ("jsonl", "json", "csv", "ris", "bibtex", "csl-json")
SEARCH_FORMATS = ("table", *EXPORT_FORMATS)  # table: for reading in a terminal

# OWASP's CSV-injection rule: a cell a spreadsheet would read as a formula starts with one of these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# C0 and C1 control characters (and DEL): a terminal may act on them (escape sequences, cursor moves); and
# the bidirectional overrides, which make text read differently from what it is ("Trojan Source").
_NUMBER = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?")  # a plain number is data, never a formula
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Line separators JSON allows raw but many line readers split on (Python's splitlines, JavaScript).
_JSON_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a string that would start a formula gets a leading
    apostrophe (which spreadsheets hide); plain numbers ("-3.25") and other values pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def json_line(text: str) -> str:
    """A JSON document that is one line for every reader: U+0085, U+2028 and U+2029 escaped (still the
    same JSON value)."""
    if text.isascii():
        return text
    for raw, escaped in _JSON_LINE_BREAKS.items():
        text = text.replace(raw, escaped)
    return text


def printable(text: str, *, one_line: bool = True) -> str:
    """Stored text made safe to print on a terminal or in an email: control characters and bidirectional
    overrides removed (so no escape sequence reaches it); with ``one_line``, tabs and line breaks become
    spaces."""
    if one_line:
        text = text.replace("\t", " ").replace("\n", " ")
    return _CONTROLS.sub("", text)


PUBMED = "https://pubmed.ncbi.nlm.nih.gov/"  # a paper's page is PUBMED + PMID + "/"


def pubmed_url(pmid: str) -> str:
    """The paper's page on PubMed (every output links there)."""
    return f"{PUBMED}{pmid}/"


def short_authors(names: Iterable[str], limit: int) -> str:
    """PubMed's short author list: ``Smith J, Lee KH, Park S, et al.`` — at most ``limit`` names, then
    "et al." when there are more. ``names`` is read lazily: consortium papers list hundreds of authors."""
    shown: list[str] = []
    for name in names:
        if name:
            if len(shown) == limit:
                return ", ".join(shown) + ", et al."
            shown.append(name)
    return ", ".join(shown)
