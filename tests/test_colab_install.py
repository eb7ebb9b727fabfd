"""The chapters' hidden install cell (what a reader on Colab runs first), run for real, offline.

Every chapter opens with the same hidden cell: when lslib is missing it runs
``pip install "lslib[book] @ git+<repository>@<branch>"`` (the repository of ``_config.yml``).
Here a wheel is built from this checkout, a fresh virtual environment is made, and each chapter's
own cell is executed in it with the git URL replaced by that wheel and pip kept offline
(``--no-index``, ``--find-links`` to the wheel's folder, no configuration files). Then the
chapter's imports are run in that environment.

What comes from where: lslib comes only from the wheel. Its dependencies (torch, the book extra)
are not downloaded: the fresh environment sees the project's own environment's packages through a
folder of links to them, lslib's own files left out. pip then still has to find every requirement
of ``lslib[book]`` installed, and fails offline if one is missing, so a dependency added to a
chapter but not to the ``book`` extra is caught when it is absent from the environment that runs
this test (the checked imports catch the rest). What this does not check: that the versions
Colab already has suit lslib (the weekly workflow .github/workflows/colab.yml runs the chapters in
the Colab image for that).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

jupytext = pytest.importorskip("jupytext", reason="the book extra is not installed")

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TIMEOUT = 600  # seconds, for any one subprocess below

# The install cell, the same in every chapter (with the repository of _config.yml).
INSTALL_CELL = '''\
# Installs lslib with the extras the chapters use (lslib[book]) when it is missing: on Colab, for
# instance. Hidden in the book; the same in every chapter (tests/test_colab_install.py).
import importlib.util
import subprocess
import sys

LSLIB = "lslib[book] @ {url}"
if importlib.util.find_spec("lslib") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", LSLIB], check=True)'''


def _install_url() -> str:
    repo = CONFIG["repository"]
    return f"git+{repo['url'].rstrip('/')}@{repo['branch']}"


def _install_cell(nb_path: Path):
    return next(c for c in jupytext.read(nb_path).cells if c.cell_type == "code")


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_chapter_opens_with_the_same_hidden_install_cell(nb_path: Path):
    cell = _install_cell(nb_path)
    assert "remove-cell" in cell.metadata.get("tags", []), "the install cell must be hidden"
    assert cell.source.strip() == INSTALL_CELL.format(url=_install_url()), (
        f"{nb_path.name}: the first code cell is not the book's install cell "
        "(copy it from another chapter; tests/test_colab_install.py has its text)")


def test_the_install_cell_installs_the_book_extra_that_exists():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    spec = re.search(r'LSLIB = "([^"]+)"', INSTALL_CELL).group(1)
    assert spec.startswith("lslib[book] @ ") and "book" in extras


# ------------------------------------------------------------------------------------------------
# the cell, run offline in a fresh virtual environment against a wheel of this checkout
# ------------------------------------------------------------------------------------------------
def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, **kw)


def _offline_env(wheels: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PIP_CONFIG_FILE=os.devnull,
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    return env


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """(python of a fresh venv, folder holding lslib's wheel, the offline environment)."""
    tmp = tmp_path_factory.mktemp("colab")
    # the wheel, built from a copy of the files the package needs (nothing written in the checkout)
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "lslib", src / "lslib", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp / "wheels"
    env = _offline_env(wheels)
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--wheel-dir", str(wheels), str(src)], env=env, cwd=tmp)
    assert built.returncode == 0, built.stdout + built.stderr
    assert [w.name for w in wheels.glob("lslib-*.whl")], "no lslib wheel was built"

    venv = tmp / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], env=env)  # pip from ensurepip: offline
    assert made.returncode == 0, made.stdout + made.stderr
    python = venv / "bin" / "python"
    # the venv's own old setuptools (Python 3.11's ensurepip) would hide the one torch requires
    _run([str(python), "-m", "pip", "uninstall", "--yes", "setuptools"], env=env)
    # the project's environment's packages, lslib's own entries left out, as a folder of links
    here = Path(sysconfig.get_paths()["purelib"])
    view = tmp / "deps"
    view.mkdir()
    for entry in here.iterdir():
        if entry.suffix == ".pth" or "lslib" in entry.name.lower():
            continue
        (view / entry.name).symlink_to(entry)
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   env=env).stdout.strip()
    Path(purelib, "project-deps.pth").write_text(f"{view}\n")
    return python, wheels, env


def _chapter_imports(nb_path: Path) -> list[str]:
    """The module-level import statements of a chapter's code cells, as source lines."""
    lines = []
    for cell in jupytext.read(nb_path).cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines()  # not IPython's % and !
                         if not (line.lstrip().startswith(("%", "!"))
                                 and not line.lstrip().startswith("!=")))
        for node in ast.parse(code).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                lines.append(ast.unparse(node))
    return list(dict.fromkeys(lines))


def test_the_import_finder_reads_a_chapter():
    imports = _chapter_imports(BOOK / "attacks.ipynb")
    assert "import torch" in imports and any(i.startswith("from lslib") for i in imports)
    assert not any("myst_nb" in i for i in imports)  # that one sits in a try: ... except


@pytest.fixture(scope="module")
def installed(fresh_venv):
    """The install cell, run in the fresh venv with lslib missing; returns that venv's python.

    The cell is the same in every chapter (checked above), so it runs once."""
    python, wheels, env = fresh_venv
    missing = _run([str(python), "-c", "import importlib.util, sys; "
                    "sys.exit(importlib.util.find_spec('lslib') is not None)"], env=env, cwd=wheels)
    assert missing.returncode == 0, "lslib is importable before the install cell ran"
    wheel = next(wheels.glob("lslib-*.whl"))
    source = _install_cell(NOTEBOOKS[0]).source
    assert source.count(_install_url()) == 1
    ran = _run([str(python), "-c", source.replace(_install_url(), wheel.as_uri())], env=env,
               cwd=wheels)
    assert ran.returncode == 0, f"the install cell failed offline:\n{ran.stdout}{ran.stderr}"
    return python, wheels, env


@pytest.mark.slow
def test_the_install_cell_installs_lslib_with_the_book_extra_offline(installed):
    python, wheels, env = installed
    venv = python.parent.parent
    check = _run([str(python), "-c", "import importlib.metadata as m, lslib; "
                  "print(lslib.__file__); print(m.version('lslib')); "
                  "print(m.distribution('lslib').read_text('direct_url.json'))"],
                 env=env, cwd=wheels)
    assert check.returncode == 0, check.stderr
    where, version, direct_url = check.stdout.split("\n", 2)
    assert where.startswith(str(venv)), f"lslib imported from {where}, not from the wheel"
    assert "lslib-" in direct_url and ".whl" in direct_url  # installed from the wheel built here


@pytest.mark.slow
def test_every_chapter_imports_after_the_install_cell(installed):
    """Each chapter's own import statements, in the fresh venv, one process for all chapters
    (importing torch once); a failure names the chapter and its statement."""
    python, wheels, env = installed
    script = ["import traceback", "failed = []"]
    for nb_path in NOTEBOOKS:
        for statement in _chapter_imports(nb_path):
            script += ["try:", f"    {statement}", "except Exception:",
                       f"    failed.append(({nb_path.name!r}, {statement!r}, "
                       "traceback.format_exc(limit=1)))"]
    script += ["import lslib.audit",
               "if not lslib.audit.autoattack_available():",
               "    failed.append(('robustness.ipynb', 'AutoAttack (pyautoattack)', ''))",
               "for f in failed: print(*f)", "raise SystemExit(len(failed))"]
    imported = _run([str(python), "-c", "\n".join(script)], env=env, cwd=wheels)
    assert imported.returncode == 0, (
        f"chapter imports fail after the install cell:\n{imported.stdout[-3000:]}"
        f"{imported.stderr[-2000:]}")
