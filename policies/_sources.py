"""The sources a control may cite, each with its own clause structure, in one table.

A citation is ``SOURCE``, ``SOURCE CLAUSE`` or either followed by ``(by analogy)``:
``NBDC-U7 2.3 item 5``, ``NBDC-U7 2.2 server 6``, ``NBDC-DC4 2.1 server 10``,
``NBDC-U7 3 (1) (by analogy)``. :func:`parse_citation` refuses a source that is
not in :data:`SOURCE_TABLE` and a clause its source does not declare, so a
citation can never name a clause that does not exist.

Each declared clause carries what it says, in the words of TIERS.md (a short
summary, not the guideline's own text; the guideline governs). A clause whose
content TIERS.md does not state carries an empty summary. The guidelines' own
words, where they were read, are in ``policies/clauses.yaml`` (``_quotes.py``);
the docs show those and label a summary as a summary.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SOURCES", "SOURCE_TABLE", "Citation", "Source", "parse_citation"]


@dataclass(frozen=True)
class Source:
    """One document: its title and every clause a citation may name."""

    title: str
    #: clause -> what it says (summary from TIERS.md; "" where TIERS.md is silent).
    #: Empty: the source is cited as a whole (it has no clause structure we rely on).
    clauses: Mapping[str, str]


@dataclass(frozen=True)
class Citation:
    """A parsed citation: the source, the clause (or None) and whether by analogy."""

    source: str
    clause: str | None
    by_analogy: bool

    @property
    def summary(self) -> str:
        """What the clause says (empty for a whole-document citation or an unknown one)."""
        if self.clause is None:
            return ""
        return SOURCE_TABLE[self.source].clauses[self.clause]


def _numbered(
    prefix: str, count: int, known: Mapping[int, str], fmt: str = "{p} {n}"
) -> dict[str, str]:
    """Clauses ``prefix 1`` .. ``prefix count``; ``known`` gives the summaries TIERS.md states."""
    if any(n < 1 or n > count for n in known):
        raise ValueError(f"{prefix}: a summary for a clause outside 1..{count}")
    return {fmt.format(p=prefix, n=n): known.get(n, "") for n in range(1, count + 1)}


_HYGIENE = (
    "One of the data-server hygiene clauses (TIERS.md cites 2.2 server 4, 5 and 7 together): "
    "patches applied, no P2P or other unnecessary software."
)

# NBDC-U7, Ver. 7.0 (checked against its text, policies/clauses.yaml): 1.5 (the data
# server's preconditions (1)-(4), which do not apply when only an off-premise server is
# used), 2.1 items 1-5, 2.2 "Data use in general" 1-6 and "Data server" 1-10, 2.3 items
# 1-13, 3 (1)-(3) (item 1's three room requirements). The yearly checklist is not cited.
_NBDC_U7 = {
    **_numbered(
        "1.5",
        4,
        {3: "A data server's access from outside is kept to the necessary minimum."},
        fmt="{p}({n})",
    ),
    **_numbered(
        "2.1 item",
        5,
        {
            1: "Controlled-access data stays on the data server and is never moved off it.",
            4: "Data is accessed solely from data servers or data access terminals.",
        },
    ),
    **_numbered(
        "2.2 general",
        6,
        {
            3: "A register of data users and of where the data is kept, with a reviewable "
            "change history.",
            6: "An incident is reported, with measures such as notification to the DBCLS.",
        },
    ),
    **_numbered(
        "2.2 server",
        10,
        {
            1: "A dedicated data server (a virtual one is allowed) and file system.",
            3: "Individual accounts only; passwords of at least 8 characters.",
            4: _HYGIENE,
            5: _HYGIENE,
            6: "Files brought onto the data server are scanned for malware.",
            7: _HYGIENE,
            8: "Logs are collected and analysed.",
            10: "On an incident the data server is disconnected at once.",
        },
    ),
    **_numbered(
        "2.3 item",
        13,
        {
            2: "Each data user has an individual account; accounts are never shared.",
            3: "No public PCs as data access terminals.",
            5: "The terminal locks after about 15 minutes idle.",
            6: "No copies of the data on the data access terminal (browser cache included).",
            8: "Encrypted paths from outside the LAN.",
            12: "When use ends, all data is deleted unrecoverably.",
            13: "On an incident, disconnect at once.",
        },
    ),
    **_numbered(
        "3",
        3,
        {
            1: "Type II: entry to the server room needs multi-factor authentication combining "
            "at least two of biometric, possession and knowledge.",
            2: "Type II: entry records are captured automatically and can be audited later.",
            3: "Type II: the room (or a locked rack) is dedicated to the approved use.",
        },
        fmt="{p} ({n})",
    ),
}

# NBDC-DC4, Ver. 4.0 (checked against its text): §2 (the general rule), 2.1 "Operation
# in general" 1-8 and "Data Server" 1-12, 2.2 "What the Operator Must Do" 1-13.
_NBDC_DC4 = {
    "§2": "As a general rule, measures equivalent to Type II must be implemented by the "
    "operator of an off-premise server, whatever the data's level.",
    **_numbered(
        "2.1 general",
        8,
        {
            5: "A register of users and of where the data is kept, with change history.",
            7: "The system is audited by security experts when built and every 2-3 years.",
            8: "An incident is reported promptly to the DBCLS.",
        },
    ),
    **_numbered(
        "2.1 server",
        12,
        {
            3: "Access from outside is kept to the necessary minimum.",
            8: "Files brought in are scanned for malware.",
            10: "The access log is acquired and checked regularly.",
        },
    ),
    **_numbered("2.2 item", 13, {}),
}

# NBDC-S8, Ver. 8.0 (checked against its text): §5.3.3 (responsibilities of users of
# controlled-access data) items 1-13, §5.4.3 (procedure) items 1-9, §5.6 (termination
# of data use) items 1-2.
_NBDC_S8 = {
    **_numbered(
        "§5.3.3 item",
        13,
        {
            9: "After a consent withdrawal, the data is no longer used.",
            10: "When use ends, the data is deleted and a completion report is submitted.",
        },
    ),
    **_numbered("§5.4.3 item", 9, {}),
    **_numbered("§5.6 item", 2, {1: "On a stop order, all data is deleted at once."}),
}

# NIST-63B4: the sections the catalog cites, numbered as the document numbers them
# (§2.2.3 and §2.3.3 reauthentication at AAL2 and AAL3, §2.3.2 AAL3 authenticators,
# §3.2.2 rate limiting, §3.2.5 phishing resistance). Cited as a whole otherwise.
_NIST_63B4 = {
    "§2.2.3": "AAL2 reauthentication: at most 24 hours overall, 1 hour idle.",
    "§2.3.2": "AAL3: a hardware-based, phishing-resistant cryptographic authenticator.",
    "§2.3.3": "AAL3 reauthentication: at most 12 hours overall, 15 minutes idle.",
    "§3.2.2": "At most 100 consecutive failed attempts, then the authenticator is disabled.",
    "§3.2.5": "A manually typed authenticator output (OTP, out-of-band) is not phishing-resistant.",
}

# SATRE: the requirement indices the catalog cites, as the stored specification numbers
# them (policies/clauses.yaml); the specification has many more.
_SATRE = {
    "2.2.10": "No connectivity between projects.",
    "2.2.11": "Outbound internet blocked by default.",
    "2.2.15": "Usage recording: which datasets are accessed, when and by whom.",
    "2.5.12": "Encryption at rest.",
    "2.5.13": "Encryption in transit.",
    "3.1.4": "Governed ingress.",
    "3.1.5": "Governed egress.",
    "3.1.12": "Unauthorised ingress and egress prevented (clipboard copy-out disabled).",
    "3.2.1": "No shared accounts.",
    "3.2.3": "Least-privilege data access.",
    "3.2.4": "MFA for all users.",
    "3.2.6": "Access may be restricted to particular networks.",
    "3.3.3": "Output disclosure control.",
}

# TMM-SP: the parts of ToMMo's supercomputer rules the catalog cites by name (the
# pages are not numbered); the rest is cited as a whole.
_TMM_SP = {
    "data classes": "Strong data never leaves; standard data only after the security "
    "committee approves, to approved analysis servers.",
    "data export rules": "Exported data is used only at the declared destination, and a copy "
    "of every export is kept for audit.",
}

#: Every source a citation may name, with its clause structure (TIERS.md "Sources").
SOURCE_TABLE: Mapping[str, Source] = {
    "NBDC-U7": Source(
        "NBDC Human Data Security Guidelines for data users, Ver. 7.0 (2024-04-01)", _NBDC_U7
    ),
    "NBDC-S8": Source("NBDC Human Data Sharing Guidelines, Ver. 8.0", _NBDC_S8),
    "NBDC-DC4": Source(
        "NBDC guideline for database-centre and off-premise server operators, Ver. 4.0",
        _NBDC_DC4,
    ),
    "TMM-SP": Source(
        "ToMMo Data Information Security Policy (rev. Oct 2024) and supercomputer rules", _TMM_SP
    ),
    "SATRE": Source("Standard Architecture for Trusted Research Environments", _SATRE),
    "NIST-63B4": Source(
        "NIST SP 800-63B-4, Digital Identity Guidelines: Authentication", _NIST_63B4
    ),
    "RFC8176": Source("RFC 8176, Authentication Method Reference Values", {}),
    "ETHICS-JP": Source(
        "Ethical Guidelines for Medical and Biological Research Involving Human Subjects "
        "(MEXT/MHLW/METI, 2021, amended 2022)",
        {},
    ),
    "ENCLAVE": Source("Enclave's own product decision, where no guideline has a clause", {}),
}

#: Short name -> title, for tables.
SOURCES: dict[str, str] = {short: s.title for short, s in SOURCE_TABLE.items()}

_CITATION = re.compile(r"^(?P<source>\S+)(?: (?P<clause>.+?))??(?P<analogy> \(by analogy\))?$")


def parse_citation(citation: str) -> Citation:
    """Parse one citation; raises ``ValueError`` (one sentence) naming what is wrong."""
    match = _CITATION.match(citation)
    source = SOURCE_TABLE.get(match["source"]) if match else None
    if match is None or source is None:
        raise ValueError(f"citation {citation!r} must start with one of {', '.join(SOURCE_TABLE)}")
    clause = match["clause"]
    if clause is not None and clause not in source.clauses:
        if not source.clauses:
            problem = "is cited as a whole (no clause structure is declared for it)"
        else:
            problem = "has no such clause"
        raise ValueError(f"citation {citation!r}: {match['source']} {problem}")
    return Citation(source=match["source"], clause=clause, by_analogy=bool(match["analogy"]))
