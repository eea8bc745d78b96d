"""What `make docs` adds to plain mkdocs (mkdocs.yml: ``hooks`` and the Python handler's
``extensions``). Not a page: mkdocs.yml excludes this file from the site.

- Pages made from files outside docs/, so each has one source: the tutorial is the
  README's quickstart (the one tests/test_quickstart.py runs), the changelog is
  CHANGELOG.md, and the benchmark results that docs/*.md link to (``../bench/results/``)
  are copied in, where those links find them.
- :class:`SphinxRoles`: the docstrings' Sphinx roles (``:func:`publish```) become links
  to the reference when the object is in it, code otherwise.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import griffe
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
README_SECTION = "## Quickstart"
BENCH = "bench/results/"  # as the site sees it; ../bench/results/ in the repository
BENCH_LINK = r"\]\(\.\./(" + BENCH + r"[^)#\s]+)"


def _quickstart() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(README_SECTION)
    end = readme.find("\n## ", start + len(README_SECTION))
    section = readme[start : end if end != -1 else None]
    title, _, body = section.partition("\n")
    return "# " + title.removeprefix("## ") + "\n" + body


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, "tutorial/quickstart.md", content=_quickstart()))
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "changelog.md", content=changelog))
    pages = (p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md"))
    linked = {path for text in pages for path in re.findall(BENCH_LINK, text)}
    for path in sorted(linked):
        files.append(File.generated(config, path, abs_src_path=str(ROOT / path)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if "/" not in page.file.src_uri:  # a page of docs/ itself, where ../ is the repository
        return markdown.replace("](../" + BENCH, "](" + BENCH)
    return markdown


ROLE = re.compile(
    r":(?:py:)?(?P<role>func|meth|class|exc|mod|attr|data|obj|const):"
    r"`(?P<tilde>~?)(?P<target>[^`<]+?)`"
)


def _identifier(obj: griffe.Object, target: str) -> str:
    """``target`` as a full dotted path, resolved from where ``obj`` stands, and past
    imports to where it is defined (the reference knows every object by that path)."""
    head, _, rest = target.partition(".")
    path = target
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            path = scope.resolve(head) + ("." + rest if rest else "")
            break
        except (griffe.NameResolutionError, AttributeError, KeyError):
            scope = scope.parent
    try:
        return str(obj.modules_collection[path].canonical_path)
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return path


def translate(obj: griffe.Object, text: str) -> str:
    """``text`` with its Sphinx roles as optional cross-references (no warning when the
    object is not in the reference) and reST's ``::`` before a code block as ``:``."""

    def link(match: re.Match[str]) -> str:
        target = match["target"].strip()
        shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
        if match["role"] in {"func", "meth"}:
            shown += "()"
        identifier = html.escape(_identifier(obj, target))
        return f'<autoref identifier="{identifier}" optional><code>{shown}</code></autoref>'

    text = ROLE.sub(link, text)
    return re.sub(r"(\S)::$", r"\1:", text, flags=re.MULTILINE)


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    """``obj`` and everything defined in it (not what it imports)."""
    yield obj
    for member in obj.members.values():
        if isinstance(member, griffe.Object):
            yield from _walk(member)


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = translate(obj, obj.docstring.value)
