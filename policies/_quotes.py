"""The guidelines' own words for the cited clauses, from ``policies/clauses.yaml``.

:func:`load_quotes` checks the table when it is read: a quote names a clause its
source declares in :data:`policies._sources.SOURCE_TABLE`, comes from a document
whose version and address are recorded, and stays short (a citation, not a copy).
A citation without a quote is listed under ``unquoted`` with the reason, so the
docs can say plainly when they show TIERS.md's summary instead.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ._sources import parse_citation
from .errors import CatalogError

__all__ = ["QUOTES_FILE", "Document", "Quote", "QuoteTable", "load_quotes", "quote_table"]

#: The built-in table, beside the package's modules.
QUOTES_FILE = Path(__file__).with_name("clauses.yaml")

_DOC_KEYS = ("version", "url", "read_from")

#: Longest quote, in words: the sentence that carries the requirement, not the page.
MAX_WORDS = 42
#: And in characters, for text without spaces between words (Japanese).
MAX_CHARS = 300


@dataclass(frozen=True)
class Document:
    """The version of a source the quotes were read in, and where it is published."""

    source: str
    version: str
    url: str
    read_from: str


@dataclass(frozen=True)
class Quote:
    """One clause in its own words; ``note`` is Enclave's remark, never the guideline's.

    ``text`` is verbatim; "…" marks an omission and counts as a word.
    """

    citation: str
    text: str
    note: str
    document: Document
    #: The page the quote is on, where the source spans pages (else the document's).
    url: str


@dataclass(frozen=True)
class QuoteTable:
    """Every quote by citation (without "by analogy"), and why the others have none."""

    quotes: Mapping[str, Quote]
    unquoted: Mapping[str, str]


def _mapping(
    data: Any, *, file: str, path: str, keys: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """``data`` as a mapping with text keys, only ``keys`` when they are given."""
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise CatalogError(file=file, path=path, problem="must be a mapping with text keys")
    extra = sorted(set(data) - set(keys)) if keys is not None else []
    if extra:
        where = f"{path}.{extra[0]}" if path else extra[0]
        raise CatalogError(file=file, path=where, problem="is not a known key")
    return data


def _text(data: Mapping[str, Any], key: str, *, file: str, path: str, required: bool) -> str:
    value = data.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise CatalogError(file=file, path=f"{path}.{key}", problem="must be non-empty text")
    return " ".join(value.split())


def _citation(key: str, *, file: str, path: str) -> str:
    """The source of a key, refusing one whose source or clause does not exist."""
    try:
        c = parse_citation(key)
    except ValueError as e:
        raise CatalogError(file=file, path=path, problem=str(e)) from e
    if c.by_analogy:
        raise CatalogError(file=file, path=path, problem='leave " (by analogy)" off the key')
    return c.source


def load_quotes(path: Path | None = None) -> QuoteTable:
    """Read and check a quote table (the built-in one by default); raises ``CatalogError``."""
    file = str(path or QUOTES_FILE)
    try:
        raw = yaml.safe_load((path or QUOTES_FILE).read_text("utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise CatalogError(file=file, path="", problem=f"cannot be read: {e}") from e
    data = _mapping(raw, file=file, path="", keys=("documents", "quotes", "unquoted"))
    documents: dict[str, Document] = {}
    for source, doc in _mapping(data.get("documents"), file=file, path="documents").items():
        where = f"documents.{source}"
        doc = _mapping(doc, file=file, path=where, keys=_DOC_KEYS)
        _citation(source, file=file, path=where)
        documents[source] = Document(
            source=source,
            **{k: _text(doc, k, file=file, path=where, required=True) for k in _DOC_KEYS},
        )
    quotes: dict[str, Quote] = {}
    for key, entry in _mapping(data.get("quotes"), file=file, path="quotes").items():
        where = f"quotes.{key}"
        source = _citation(key, file=file, path=where)
        if key == source:
            raise CatalogError(file=file, path=where, problem="a quote must name a clause")
        if source not in documents:
            raise CatalogError(
                file=file, path=where, problem=f"documents.{source} (version and URL) is missing"
            )
        entry = _mapping(entry, file=file, path=where, keys=("text", "note", "url"))
        text = _text(entry, "text", file=file, path=where, required=True)
        if len(text.split()) > MAX_WORDS or len(text) > MAX_CHARS:
            raise CatalogError(
                file=file,
                path=f"{where}.text",
                problem=f"is longer than {MAX_WORDS} words or {MAX_CHARS} characters",
            )
        note = _text(entry, "note", file=file, path=where, required=False)
        url = _text(entry, "url", file=file, path=where, required=False)
        quotes[key] = Quote(
            citation=key,
            text=text,
            note=note,
            document=documents[source],
            url=url or documents[source].url,
        )
    unquoted: dict[str, str] = {}
    for key, reason in _mapping(data.get("unquoted"), file=file, path="unquoted").items():
        where = f"unquoted.{key}"
        _citation(key, file=file, path=where)
        if key in quotes:
            raise CatalogError(file=file, path=where, problem="is both quoted and unquoted")
        unquoted[key] = _text({"reason": reason}, "reason", file=file, path=where, required=True)
    return QuoteTable(quotes=quotes, unquoted=unquoted)


@functools.cache
def quote_table() -> QuoteTable:
    """The built-in table, read once."""
    return load_quotes()
