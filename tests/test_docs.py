"""The documentation builds (`make docs`) with every warning an error, and its API
reference covers the public API.

mkdocs.yml makes mkdocs warn of a page left out of the nav, a link to a page or an
anchor that does not exist, and mkdocstrings of what it cannot render; ``--strict``
makes each of those fail the build.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import tidings
import tidings.client
import tidings.testing

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in r.stderr, r.stderr
    return out


def anchors(site: Path, page: str) -> set[str]:
    return set(re.findall(r' id="([^"]+)"', (site / page / "index.html").read_text()))


@pytest.mark.parametrize(
    ("page", "module", "names"),
    [
        ("reference/tidings", "tidings", tidings.__all__),
        ("reference/client", "tidings.client", tidings.client.__all__),
        ("reference/testing", "tidings.testing", tidings.testing.__all__),
        ("reference/feeds", "tidings.feeds", ["ModelFeed", "feed"]),
        ("reference/exceptions", "tidings.exceptions", ["TidingsError", "BrokerError",
                                                        "ClientError", "Refused", "Reject"]),
        ("reference/conf", "tidings.conf", ["DEFAULTS", "Settings", "get_settings"]),
    ],
)  # fmt: skip
def test_the_reference_has_every_public_name(
    site: Path, page: str, module: str, names: list[str]
) -> None:
    found = anchors(site, page)
    assert not {f"{module}.{n}" for n in names} - found


def test_the_reference_shows_docstrings_and_no_sphinx_roles(site: Path) -> None:
    html = (site / "reference" / "tidings" / "index.html").read_text()
    assert "Async twin of" in html  # apublish's docstring
    for page in (site / "reference").glob("*/index.html"):
        assert not re.search(r":(func|class|mod|meth|attr|exc|data):`", page.read_text()), page
    # a role naming an object of the reference is a link to it
    assert 'href="#tidings.apublish"' in html


def test_the_tutorial_is_the_readme_quickstart(site: Path) -> None:
    html = (site / "tutorial" / "quickstart" / "index.html").read_text()
    assert "news/realtime.py" in html and "startproject" in html


def test_the_readme_links_to_docs_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#:]+\.md)", readme)
    assert "docs/guide.md" in links
    assert not [link for link in links if not (ROOT / link).is_file()]
    assert "django-tidings" in readme
