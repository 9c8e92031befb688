"""The README and docs/ link nothing outside the repository, and every relative link they
hold resolves to a file of it (issue 14: the README linked ../shared/…)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_no_link_leaves_the_repository() -> None:
    broken = []
    for doc in DOCS:
        text = doc.read_text()
        assert "../shared/" not in text, f"{doc.name} names ../shared/"
        for target in LINK.findall(text):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            if not path.is_relative_to(REPO) or not path.exists():
                broken.append(f"{doc.relative_to(REPO)}: {target}")
    assert broken == []


def anchors(doc: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped
    (hyphens and underscores kept), spaces to hyphens, repeats numbered -1, -2 …; and any
    explicit `<a id="…">`."""
    seen: dict[str, int] = {}
    found = set(re.findall(r'<a (?:id|name)="([^"]+)"', doc.read_text()))
    fenced = False
    for line in doc.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not re.match(r"#{1,6} ", line):
            continue
        text = re.sub(r"`|\*\*|\*", "", line.lstrip("#").strip()).lower()
        slug = re.sub(r"[^\w\- ]", "", text, flags=re.UNICODE).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_every_anchor_a_link_names_is_a_heading() -> None:
    broken = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text()):
            if target.startswith(("http://", "https://", "mailto:")) or "#" not in target:
                continue
            file, anchor = target.split("#", 1)
            path = (doc.parent / file).resolve() if file else doc
            if path.suffix == ".md" and path.exists() and anchor not in anchors(path):
                broken.append(f"{doc.relative_to(REPO)}: {target}")
    assert broken == []


def test_the_domain_reference_has_the_sections_rules_cite() -> None:
    cited = set()
    for pack in (REPO / "edge_rules").rglob("*.yaml"):
        cited |= {int(n) for n in re.findall(r"DOMAIN §(\d+)", pack.read_text())}
    domain = (REPO / "docs" / "domain.md").read_text()
    assert cited and all(f"## {n}. " in domain for n in cited), cited
