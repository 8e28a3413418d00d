"""The guidelines' own words beside each citation (policies/clauses.yaml).

An officer holding the guidelines checks the docs against them: a quote must name a
clause its source really has, every citation must either be quoted or say why not,
and nothing may pass TIERS.md's summary off as the guideline's wording.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from policies import CatalogError, load_catalog
from policies._model import ORGANISATIONAL_DUTIES
from policies._quotes import QUOTES_FILE, load_quotes
from policies._render import citation_text
from policies._sources import SOURCE_TABLE, parse_citation


def _citations() -> set[str]:
    every = {c for t in load_catalog() for _, ctl in t.controls() for c in ctl.sources}
    every |= {c for d in ORGANISATIONAL_DUTIES for c in d.sources}
    return every


def _write(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(QUOTES_FILE.read_text("utf-8"))
    edit(data)
    path = tmp_path / "clauses.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def test_every_quoted_clause_exists_in_its_sources_clause_table():
    table = load_quotes()
    assert table.quotes, "the built-in table quotes nothing"
    for key, quote in table.quotes.items():
        c = parse_citation(key)
        assert c.clause is not None, key
        assert c.clause in SOURCE_TABLE[c.source].clauses, key
        assert quote.document.source == c.source, key


def test_a_quote_of_a_clause_the_source_does_not_have_is_refused(tmp_path):
    # "item 34" was once cited and does not exist: a quote for it must not load either.
    path = _write(tmp_path, lambda d: d["quotes"].update({"NBDC-U7 2.3 item 34": {"text": "x"}}))
    with pytest.raises(CatalogError) as e:
        load_quotes(path)
    assert e.value.path == "quotes.NBDC-U7 2.3 item 34"
    assert "no such clause" in e.value.problem


def test_a_quote_longer_than_a_short_citation_is_refused(tmp_path):
    long = " ".join(["word"] * 60)
    path = _write(tmp_path, lambda d: d["quotes"]["NBDC-U7 2.3 item 5"].update({"text": long}))
    with pytest.raises(CatalogError) as e:
        load_quotes(path)
    assert e.value.path == "quotes.NBDC-U7 2.3 item 5.text"
    assert "words" in e.value.problem


def test_a_quote_of_a_document_without_version_and_url_is_refused(tmp_path):
    path = _write(tmp_path, lambda d: d["documents"].pop("NBDC-DC4"))
    with pytest.raises(CatalogError) as e:
        load_quotes(path)
    assert "NBDC-DC4" in str(e.value)


def test_a_citation_both_quoted_and_listed_unquoted_is_refused(tmp_path):
    path = _write(tmp_path, lambda d: d["unquoted"].update({"NBDC-U7 2.3 item 5": "why not"}))
    with pytest.raises(CatalogError) as e:
        load_quotes(path)
    assert "both" in e.value.problem


def test_every_citation_of_the_catalog_is_quoted_or_unquoted_with_a_reason():
    table = load_quotes()
    for citation in sorted(_citations()):
        key = citation.removesuffix(" (by analogy)")
        assert key in table.quotes or table.unquoted.get(key), citation


def test_the_docs_never_pass_a_summary_off_as_the_guidelines_wording():
    table = load_quotes()
    for citation in sorted(_citations()):
        text = citation_text(citation)
        key = citation.removesuffix(" (by analogy)")
        if key in table.quotes:
            quote = table.quotes[key]
            assert text.startswith(f"“{quote.text}”"), citation
            assert quote.document.version in text, citation
            assert quote.url in text, citation
        else:
            assert "not quoted" in text, citation
            if "TIERS.md" in text:
                assert "TIERS.md's summary, not the guideline's wording" in text, citation


def test_the_nist_text_here_is_labelled_as_the_stored_revision_not_the_final():
    # The stored SP 800-63B-4 revision words §3.2.2 differently from the final
    # publication; the docs must not present it as the final text.
    text = citation_text("NIST-63B4 §3.2.2")
    assert "no more than 100" in text
    assert "draft" in text


def test_user_guideline_data_server_has_four_preconditions():
    # NBDC-U7 Ver. 7.0 §1 item 5: "satisfy the following (1) to (4) as preconditions".
    u7 = SOURCE_TABLE["NBDC-U7"].clauses
    assert [c for c in u7 if c.startswith("1.5")] == ["1.5(1)", "1.5(2)", "1.5(3)", "1.5(4)"]


def test_dc4_declares_its_real_lists():
    # NBDC-DC4 Ver. 4.0: 2.1 "Operation in general" 1-8, 2.1 "Data Server" 1-12,
    # 2.2 "What the Operator Must Do" 1-13.
    dc4 = SOURCE_TABLE["NBDC-DC4"].clauses
    for prefix, count in (("2.1 general", 8), ("2.1 server", 12), ("2.2 item", 13)):
        numbered = [c for c in dc4 if c.rsplit(" ", 1)[0] == prefix]
        assert numbered == [f"{prefix} {n}" for n in range(1, count + 1)], prefix


def test_the_sharing_guideline_is_cited_by_item():
    # NBDC-S8 Ver. 8.0: deletion at the end of use is §5.3.3 item 10; a consent
    # withdrawal is §5.3.3 item 9; a stop order is §5.6 item 1.
    s8 = SOURCE_TABLE["NBDC-S8"].clauses
    assert [c for c in s8 if c.startswith("§5.3.3 ")] == [f"§5.3.3 item {n}" for n in range(1, 14)]
    assert {"§5.4.3 item 9", "§5.6 item 1", "§5.6 item 2"} <= set(s8)


def test_satre_and_nist_are_cited_by_requirement_where_the_catalog_relies_on_one():
    # A whole-document citation cannot be checked by an officer; SATRE's requirement
    # indices and NIST's sections can. NIST-63B4 as a whole stays only for the AAL itself.
    for tier in load_catalog():
        for group, control in tier.controls():
            assert "SATRE" not in control.sources, (tier.id, group)
            if group in ("session", "throttle"):
                assert "NIST-63B4" not in control.sources, (tier.id, group)


def test_tommo_data_export_cites_the_rules_it_follows_on_their_own_page():
    # Committee approval, the declared destination and the retained copy come from the
    # supercomputer's data classes and export rules, each quoted from its own page.
    catalog = load_catalog()
    for tier_id in ("tommo-standard", "tommo-strong"):
        sources = catalog.get(tier_id).control("export_data").sources
        assert {"TMM-SP data classes", "TMM-SP data export rules"} <= set(sources), tier_id
    text = citation_text("TMM-SP data export rules")
    assert "ph3-doc/rule/export-rule.html" in text
    assert "Translation:" in text
