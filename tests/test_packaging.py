"""What the wheel installs: one top-level package, `pipeline`, and the `pipeline` command.

The checkout's `stages/` (what dvc.yaml runs) is not installed. `pipeline` is a generic name, so
a test checks that the imported `pipeline` is this package and not a stray `pipeline.py` earlier
on sys.path. The build is real (setuptools, no network, no isolation)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_one_package_and_the_pipeline_command(tmp_path: Path) -> None:
    had_build = (ROOT / "build").exists()  # setuptools builds in the source tree's build/
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    if not had_build:
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"pipeline"}, top
    assert "pipeline/train/loop.py" in names and "pipeline/cli/__init__.py" in names
    assert any(n.startswith("pipeline/data/words/") for n in names)  # package data travels
    (ep,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(ep).decode()
    assert "pipeline = pipeline.cli:main" in text


def test_no_other_top_level_package_in_the_repo() -> None:
    """A new top-level folder with an __init__.py would not be installed (the wheel includes only
    pipeline*) yet import fine from a checkout: refuse it here instead of on a user's machine.
    `stages` is the checkout's DVC entry points (run from the repo root, never installed)."""
    pkgs = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert pkgs <= {"pipeline", "stages", "tests"}, pkgs


def test_the_imported_pipeline_is_this_package(tmp_path: Path) -> None:
    """`import pipeline` resolves to the installed package (its cli, its version), even when a
    stray pipeline.py sits in the current directory of a `pipeline` command."""
    import pipeline

    assert Path(pipeline.__file__).resolve() == ROOT / "pipeline" / "__init__.py"
    (tmp_path / "pipeline.py").write_text("raise SystemExit('the stray module was imported')\n")
    exe = Path(sys.executable).with_name("pipeline")
    out = subprocess.run([str(exe), "--help"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0 and "stray" not in out.stdout + out.stderr, out.stderr
