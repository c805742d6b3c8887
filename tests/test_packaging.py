"""What the wheel installs: one top-level package, `sfm_fusion`, and the `pipeline` command.

Generic top-level names (`stages`, `pipeline`) would collide with any other project's module of
that name in the same environment; the build is real (setuptools, no network, no isolation)."""

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
    assert top == {"sfm_fusion"}, top
    assert "sfm_fusion/stages/train.py" in names and "sfm_fusion/cli/__init__.py" in names
    assert any(n.startswith("sfm_fusion/data/words/") for n in names)  # package data travels
    (ep,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(ep).decode()
    assert "pipeline = sfm_fusion.cli:main" in text


def test_no_other_top_level_package_in_the_repo() -> None:
    """A new top-level folder with an __init__.py would not be installed (the wheel includes only
    sfm_fusion*) yet import fine from a checkout: refuse it here instead of on a user's machine."""
    pkgs = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert pkgs <= {"sfm_fusion", "tests"}, pkgs
