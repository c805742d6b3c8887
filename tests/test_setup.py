"""scripts/setup.sh is idempotent: a second run touches neither apt nor pip, every time.

Most tests run the real script in a scratch copy of the repository whose `.venv/bin/python` is
a stub that logs its arguments (so "pip ran" is observable and nothing is installed), with stub
`apt-get` and `sudo` on PATH that log and fail. One test runs the script in this checkout
itself when it is already set up (as in CI), with the same stubs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup.sh"
OVERLAY = ".venv/overlays/transformers5"  # transformers 5, for tests/test_transformers_majors.py
N_PIP = 4  # pip steps: pip itself, torch + torchaudio, the project, the overlay
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _debian_packages() -> list[str]:
    m = re.search(r'^DEBIAN_PACKAGES="([^"]*)"', SETUP.read_text(), re.M)
    assert m, f'{SETUP}: no DEBIAN_PACKAGES="..." line at the top'
    return m.group(1).split()


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


@pytest.fixture
def clone(tmp_path: Path) -> dict:
    """A scratch repo: scripts/setup.sh, pyproject.toml, a fake .venv, stub apt-get/sudo."""
    repo, stubs = tmp_path / "repo", tmp_path / "stubs"
    (repo / "scripts").mkdir(parents=True)
    (repo / ".venv" / "bin").mkdir(parents=True)
    stubs.mkdir()
    shutil.copy(SETUP, repo / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    log = tmp_path / "calls.log"
    log.touch()
    _stub(repo / ".venv" / "bin" / "python", f'echo "python $*" >> "{log}"\nexit "${{PY_RC:-0}}"\n')
    for tool in ("apt-get", "apt", "sudo"):
        _stub(stubs / tool, f'echo "{tool} $*" >> "{log}"\nexit "${{APT_RC:-1}}"\n')
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    return {"repo": repo, "stubs": stubs, "log": log, "env": env}


def _run(c: dict, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(c["repo"] / "scripts" / "setup.sh"), *args],
        env={**c["env"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _calls(c: dict) -> list[str]:
    return c["log"].read_text().splitlines()


def _fake_dpkg(c: dict, installed: list[str]) -> None:
    """A dpkg-query on PATH that knows exactly `installed` (the others are 'not installed')."""
    cases = "".join(f'  {p}) printf "install ok installed";;\n' for p in installed)
    _stub(
        c["stubs"] / "dpkg-query",
        f'pkg="${{@: -1}}"\ncase "$pkg" in\n{cases}  *) echo "no packages found matching $pkg" >&2; exit 1;;\nesac\n',
    )


def test_pip_runs_once_then_never_and_apt_never(clone):
    _fake_dpkg(clone, _debian_packages())
    first = _run(clone)
    assert first.returncode == 0, first.stderr
    pip = [x for x in _calls(clone) if x.startswith("python")]
    assert len(pip) == N_PIP and "torch==2.14.1 torchaudio==2.11.1" in pip[1]
    assert "-e .[dev] transformers<5" in pip[2] and f"--target {OVERLAY} transformers==5" in pip[3]
    assert (clone["repo"] / ".venv" / ".setup-stamp").is_file()
    for _ in range(20):
        again = _run(clone)
        assert again.returncode == 0, again.stderr
        assert again.stdout == "" and again.stderr == ""
    assert len(_calls(clone)) == N_PIP  # no further pip, no apt-get, no sudo
    assert _run(clone, "--check").returncode == 0


def test_fresh_clone_creates_the_venv_then_installs_torch_then_the_project(clone):
    _fake_dpkg(clone, _debian_packages())
    repo, log = clone["repo"], clone["log"]
    shutil.rmtree(repo / ".venv")
    py = clone["stubs"] / "python-for-venv"  # what `$PYTHON -m venv .venv` runs
    _stub(
        py,
        f"""echo "venv $*" >> "{log}"
mkdir -p .venv/bin && echo stale > .venv/.setup-stamp
printf '#!/usr/bin/env bash\\necho "python $*" >> "{log}"\\n' > .venv/bin/python
chmod +x .venv/bin/python
""",
    )
    res = _run(clone, PYTHON=str(py))
    assert res.returncode == 0, res.stderr
    assert _calls(clone)[0] == "venv -m venv .venv"
    pip = _calls(clone)[1:]
    args = [x.split(" install -q ")[-1] for x in pip]
    assert args[:3] == [
        "--upgrade pip",
        "torch==2.14.1 torchaudio==2.11.1",
        "-e .[dev] transformers<5",
    ]
    assert len(args) == N_PIP and args[3].startswith(f"--no-deps --target {OVERLAY} ")
    assert _run(clone, PYTHON=str(py)).returncode == 0 and len(_calls(clone)) == N_PIP + 1


def test_the_overlay_is_made_anew_when_pip_runs(clone):
    """A stale overlay (another transformers 5 pin) is removed before pip fills it again."""
    _fake_dpkg(clone, _debian_packages())
    stale = clone["repo"] / OVERLAY / "transformers-5.0.0.dist-info"
    stale.mkdir(parents=True)
    assert _run(clone).returncode == 0
    assert not stale.exists() and len(_calls(clone)) == N_PIP
    stale.mkdir(parents=True)
    assert _run(clone).returncode == 0 and stale.exists()  # stamp current: nothing touched


def test_only_missing_debian_packages_are_installed(clone):
    pkgs = _debian_packages()
    _fake_dpkg(clone, pkgs[1:])
    done = _run(clone, APT_RC="0")
    assert done.returncode == 0, done.stderr
    apt = [x for x in _calls(clone) if x.startswith("apt-get")]
    assert apt[0] == "apt-get update -qq"
    assert apt[1].startswith("apt-get install") and apt[1].split()[-1] == pkgs[0]
    assert not any(p in apt[1].split() for p in pkgs[1:])


def test_apt_failure_fails_the_setup(clone):
    _fake_dpkg(clone, [])
    res = _run(clone)  # the stub apt-get fails, as on a machine without root or mirror
    assert res.returncode != 0
    assert not (clone["repo"] / ".venv" / ".setup-stamp").exists()


def test_pip_failure_fails_the_setup_and_leaves_no_stamp(clone):
    _fake_dpkg(clone, _debian_packages())
    res = _run(clone, PY_RC="1")
    assert res.returncode != 0
    assert len([x for x in _calls(clone) if x.startswith("python")]) == 1  # stopped at once
    assert not (clone["repo"] / ".venv" / ".setup-stamp").exists()
    assert _run(clone).returncode == 0 and (clone["repo"] / ".venv" / ".setup-stamp").exists()


def test_stamp_follows_pyproject_not_the_debian_list(clone):
    _fake_dpkg(clone, [*_debian_packages(), "flite"])
    assert _run(clone).returncode == 0
    script = clone["repo"] / "scripts" / "setup.sh"
    script.write_text(script.read_text().replace('DEBIAN_PACKAGES="', 'DEBIAN_PACKAGES="flite ', 1))
    assert _run(clone).returncode == 0
    assert len(_calls(clone)) == N_PIP  # a new Debian package reinstalls no Python package
    pyproject = clone["repo"] / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n# changed\n")
    check = _run(clone, "--check")
    assert check.returncode == 1 and "would install Python packages" in check.stdout
    assert len(_calls(clone)) == N_PIP  # --check installs nothing
    assert _run(clone).returncode == 0
    assert len(_calls(clone)) == 2 * N_PIP


def _burn(seconds: float) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", f"end=$((SECONDS+{int(seconds)})); while [ $SECONDS -lt $end ]; do :; done"])  # fmt: skip


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian system")
def test_real_dpkg_checks_never_call_apt_under_load(clone):
    """With this machine's dpkg: 20 runs, under CPU load, never reach apt (the old check raced)."""
    missing = [p for p in _debian_packages() if subprocess.run(["dpkg-query", "-W", p], capture_output=True).returncode]  # fmt: skip
    if missing:
        pytest.skip(f"Debian packages {missing} are not installed here: run scripts/setup.sh")
    assert _run(clone).returncode == 0
    burners = [_burn(8) for _ in range(os.cpu_count() or 2)]
    try:
        t0 = time.monotonic()
        for _ in range(20):
            res = _run(clone)
            assert res.returncode == 0 and res.stdout == "", res.stdout + res.stderr
        assert time.monotonic() - t0 < 30
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert len(_calls(clone)) == N_PIP and not any(
        x.startswith(("apt", "sudo")) for x in _calls(clone)
    )


def test_this_checkout_once_set_up_touches_neither_apt_nor_pip(tmp_path):
    """In a checkout set up by scripts/setup.sh (CI; a fresh clone after its first run)."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for tool in ("apt-get", "apt", "sudo"):
        _stub(stubs / tool, f'echo "{tool} $*" >> "{tmp_path}/apt.log"\nexit 1\n')
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    check = subprocess.run(["bash", str(SETUP), "--check"], env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    if check.returncode:
        pytest.skip(f"this checkout is not set up ({check.stdout.strip()}): run scripts/setup.sh")
    stamp = ROOT / ".venv" / ".setup-stamp"
    before = stamp.stat().st_mtime_ns
    for _ in range(5):
        res = subprocess.run(["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert res.returncode == 0 and res.stdout == "", res.stdout + res.stderr
    assert stamp.stat().st_mtime_ns == before  # pip never ran
    assert not (tmp_path / "apt.log").exists()
