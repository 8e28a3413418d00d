"""Names: the collision-safe slug helper (table tests, kubespawner ``test_slugs`` style)."""

from __future__ import annotations

import pytest

from controller.kube import safe_slug
from controller.kube._slugs import prefixed_slug


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("gut-microbiome-2026", "gut-microbiome-2026"),
        ("a", "a"),
        ("Gut-Microbiome", "gut-microbiome--e4c7231527"),
        ("r.tanaka@company-a.example", "r-tanaka-company-a-example--005af4f75b"),
        ("a--b", "a-b--90827a2e56"),
        ("-leading", "leading--58a376dfef"),
        ("日本語", "x--77710aedc7"),
        ("", "x--e3b0c44298"),
    ],
)
def test_safe_slug(name: str, slug: str) -> None:
    assert safe_slug(name) == slug


def test_two_names_that_clean_to_the_same_text_stay_apart() -> None:
    assert safe_slug("a.b") != safe_slug("a_b")
    assert safe_slug("a-b") != safe_slug("A-B")


def test_a_changed_name_never_equals_an_unchanged_one() -> None:
    changed = safe_slug("A-B")
    assert "--" in changed
    assert safe_slug(changed) != changed  # '--' is never passed through


def test_long_names_are_truncated_with_the_hash() -> None:
    slug = safe_slug("x" * 100, max_length=30)
    assert len(slug) == 30
    assert slug.startswith("x" * 18 + "--")


def test_prefixed_slug_fits_the_limit() -> None:
    assert prefixed_slug("enclave", "metabolome-2026") == "enclave-metabolome-2026"
    assert len(prefixed_slug("home", "u" * 200)) == 63
    with pytest.raises(ValueError, match="prefix"):
        prefixed_slug("Bad_Prefix", "x")
