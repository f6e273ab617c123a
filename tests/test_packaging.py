"""A non-editable install works: templates and benchmark data are package data.

Builds the wheel, installs it with --no-deps into a temporary venv layered over the
project's venv (its site-packages via a .pth file), and runs the installed `akd` from a
folder outside the repository, so nothing can come from the source tree.
"""
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*cmd, cwd) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: {done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.slow
def test_wheel_install_finds_templates_and_data(tmp_path):
    wheels = tmp_path / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", wheels, REPO, cwd=tmp_path)
    wheel = next(wheels.glob("akd-*.whl"))

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(_run(python, "-c", "import site; print(site.getsitepackages()[0])",
                     cwd=tmp_path).strip())
    project_site = [p for p in sys.path if p.endswith("site-packages")][0]
    (site / "project_venv.pth").write_text(project_site + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel,
         cwd=tmp_path)

    run = tmp_path / "elsewhere"
    run.mkdir()
    help_text = _run(env_dir / "bin" / "akd", "--help", cwd=run)
    assert "teacher-cache" in help_text and "distill" in help_text
    probe = ("import inference.templates as t, stages.evaluate.datasets as d\n"
             "print(t.__file__); print(t.get_template('enhanced').name)\n"
             "print(len(d.load_tasks('humaneval')), len(d.load_tasks('mbpp')), d.DEFAULT_DATA_DIR)\n")
    out = _run(python, "-c", probe, cwd=run).splitlines()
    assert out[0].startswith(str(site)), out  # the installed copy, not the source tree
    assert out[1] == "enhanced"
    assert out[2].startswith("164 500 ") and out[2].split()[2].startswith(str(site))
