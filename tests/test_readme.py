"""The README's first command, as a new user runs it: parsed from the README, in a copy of the repository with
no `../shared` beside it, in a fresh virtual environment (that sees this one's packages, so nothing is
downloaded but pip's build backend)."""

import os
import pathlib
import re
import shutil
import site
import subprocess
import venv

ROOT = pathlib.Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The commands of the README's first bash block, trailing comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [re.sub(r"\s+#[^\"']*$", "", line).strip() for line in block.splitlines() if line.strip()]


def copy_of_repository(destination: pathlib.Path) -> pathlib.Path:
    """The files git tracks, and the untracked ones it does not ignore, as a fresh clone would have them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def fresh_venv(path: pathlib.Path) -> pathlib.Path:
    """A new virtual environment whose path ends in this interpreter's site-packages (a .pth file), so that
    pip finds the installed requirements and installs only the project itself."""
    venv.create(path, with_pip=True)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = subprocess.run([str(path / "bin" / "python"), "-c", where], check=True, capture_output=True,
                             text=True).stdout.strip()
    here = [p for p in site.getsitepackages() + [site.getusersitepackages()] if os.path.isdir(p)]
    pathlib.Path(purelib, "zz_outer_site.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in here))
    return path / "bin"


def test_readme_first_command_runs_from_a_clone_alone(tmp_path):
    command = readme_commands()[0]
    assert "inference.scaling.bench" in command, command
    repo = copy_of_repository(tmp_path / "clone")
    assert not (repo.parent / "shared").exists()
    bin_dir = fresh_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    done = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True, timeout=1500)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    # the table: a header, then one row per method at the budget, each with an accuracy and its interval
    assert re.search(r"method\s+budget\s+accuracy\s+95% interval", done.stdout), out[-4000:]
    rows = re.findall(r"^(pf|bon|majority)\s+4\s+([01]\.\d{3})\s+\[", done.stdout, re.M)
    assert sorted(m for m, _ in rows) == ["bon", "majority", "pf"], done.stdout
    assert "6 problems from svamp" in done.stdout


def test_ci_runs_the_readme_test_command():
    command = readme_commands()[1]
    assert "pytest" in command and command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
