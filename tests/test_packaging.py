"""What `pip install tidings` gets: the wheel and sdist that PyPI would be sent.

One build (hatchling, the lock's, no network), one clean venv: the wheel is installed
there alone (``--no-deps --no-index``) and its dependencies are the project's own
``.venv``'s, put after the venv's site-packages by a ``.pth`` line (a line, so the
``.venv``'s editable-install ``.pth``, which would put ``src/`` on the path, is not run).
``--system-site-packages`` would not do: it gives the base interpreter's packages, not
the ``.venv``'s. The checks run in that venv with ``python -I`` from an empty directory,
so nothing of the checkout can be imported by mistake.
"""

from __future__ import annotations

import email
import email.message
import json
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "tidings"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]
NEEDED_CLASSIFIERS = {
    "Framework :: Django",
    "Framework :: Django :: 5.2",
    "Programming Language :: Python :: 3.11",
    "Typing :: Typed",
}


def package_files() -> list[str]:
    """Every file of the package in the source tree, as a path inside the package."""
    return sorted(
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def run(*args: str | Path, cwd: Path = ROOT, timeout: float = 120) -> str:
    r = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    command = " ".join(str(a) if len(str(a)) < 200 else "<...>" for a in args)
    assert r.returncode == 0, f"{command}\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "hatchling", "build", "-d", out)
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob("tidings-*.whl")
    return found


@pytest.fixture(scope="module")
def sdist(dist: Path) -> Path:
    (found,) = dist.glob("tidings-*.tar.gz")
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("venv") / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", where)
    python = where / "bin" / "python"
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
        "--no-deps", "--no-index", "--no-cache-dir", "--disable-pip-version-check", wheel,
    )  # fmt: skip
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"))
    deps = sysconfig.get_paths()["purelib"]  # this .venv's packages, after the venv's own
    (Path(site.as_posix().strip()) / "_tidings_test_deps.pth").write_text(deps + "\n")
    yield where


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        return email.message_from_bytes(z.read(f"tidings-{VERSION}.dist-info/METADATA"))


def test_the_wheel_holds_every_file_of_the_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    inside = {n.removeprefix("tidings/") for n in names if n.startswith("tidings/")}
    assert set(package_files()) <= inside, set(package_files()) - inside
    for needed in ("py.typed", "static/tidings/tidings.js", "brokers/redis/lua/publish.lua"):
        assert needed in inside
    assert f"tidings-{VERSION}.dist-info/licenses/LICENSE" in names
    # only the package: no tests, demo or bench at the top level of site-packages
    assert {n.split("/")[0] for n in names} == {"tidings", f"tidings-{VERSION}.dist-info"}


def test_the_wheel_metadata(wheel: Path) -> None:
    meta = metadata(wheel)
    assert meta["Name"] == "tidings"
    assert meta["Version"] == VERSION
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta["License-File"] == "LICENSE"
    assert meta["Requires-Python"] == ">=3.11"
    classifiers = set(meta.get_all("Classifier") or [])
    assert classifiers >= NEEDED_CLASSIFIERS
    assert any(c.startswith("Development Status ::") for c in classifiers)
    # PEP 639: the license is the expression; a License :: classifier beside it is an error
    # to some tools (setuptools) and deprecated for all
    assert not [c for c in classifiers if c.startswith("License ::")]
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= set(urls)
    assert "django-tidings" in (meta.get_payload() or "")  # the README, with its warning


def test_the_sdist_builds_the_same_package(sdist: Path) -> None:
    top = f"tidings-{VERSION}"
    with tarfile.open(sdist) as t:
        names = set(t.getnames())
    for needed in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "PKG-INFO"):
        assert f"{top}/{needed}" in names
    missing = {f for f in package_files() if f"{top}/src/tidings/{f}" not in names}
    assert not missing
    assert f"{top}/tests/test_packaging.py" in names


def test_a_checkout_that_is_not_installed_has_its_pyprojects_version(tmp_path: Path) -> None:
    """No site-packages at all (``-S``): no distribution metadata to read."""
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); import tidings; "
    code += "print(tidings.__version__)"
    assert run(sys.executable, "-I", "-S", "-c", code, cwd=tmp_path).strip() == VERSION


CHECK = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    from importlib.metadata import version
    from importlib.resources import files
    from pathlib import Path

    expected = json.loads(sys.argv[1])
    import tidings

    here = Path(tidings.__file__).parent
    assert here.is_relative_to(sys.prefix), (here, sys.prefix)
    assert tidings.__version__ == version("tidings") == expected["version"], tidings.__version__
    missing = [f for f in expected["files"] if not (here / f).is_file()]
    assert not missing, missing
    assert (files("tidings") / "py.typed").is_file()

    from django.conf import settings
    settings.configure(
        INSTALLED_APPS=[
            "tidings", "django.contrib.auth", "django.contrib.contenttypes",
            "django.contrib.staticfiles",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        STATIC_URL="/static/", ROOT_URLCONF="tidings.urls", SECRET_KEY="x" * 50,
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                    "APP_DIRS": True}],
    )
    import django
    django.setup()

    from django.apps import apps
    from django.contrib.staticfiles import finders
    from django.core.management import get_commands
    from django.db.migrations.loader import MigrationLoader

    assert Path(apps.get_app_config("tidings").path) == here
    js = finders.find("tidings/tidings.js")
    assert js and Path(js).is_relative_to(here), js
    from tidings.brokers.redis import scripts
    assert set(scripts.SOURCES) == set(scripts.NAMES) and all(scripts.SOURCES.values())
    commands = {name for name, app in get_commands().items() if app == "tidings"}
    assert commands == set(expected["commands"]), commands
    loader = MigrationLoader(None, ignore_no_migrations=True)
    migrations = {name for app, name in loader.disk_migrations if app == "tidings"}
    assert migrations == set(expected["migrations"]), migrations
    from django.template.loader import get_template
    for template in expected["templates"]:
        assert Path(get_template(template).origin.name).is_relative_to(here), template

    modules = [m.name for m in pkgutil.walk_packages(tidings.__path__, "tidings.")]
    for name in modules:
        importlib.import_module(name)
    print(json.dumps({"modules": len(modules)}))
    """
)


def test_the_installed_wheel_works_in_a_clean_venv(venv: Path, tmp_path: Path) -> None:
    files = package_files()
    expected = {
        "version": VERSION,
        "files": files,
        "commands": [Path(f).stem for f in files
                     if f.startswith("management/commands/") and not f.endswith("__init__.py")],
        "migrations": [Path(f).stem for f in files
                       if f.startswith("migrations/") and not f.endswith("__init__.py")],
        "templates": [f.removeprefix("templates/") for f in files if f.startswith("templates/")],
    }  # fmt: skip
    out = run(venv / "bin" / "python", "-I", "-c", CHECK, json.dumps(expected), cwd=tmp_path)
    # every module but tidings itself, which walk_packages does not list
    assert json.loads(out)["modules"] == sum(f.endswith(".py") for f in files) - 1
