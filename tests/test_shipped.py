"""Tests for what ships with the package: configs as package data, `harness init`, `--version`, the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

import harness
from harness.cli import main
from harness.config import load_config
from harness.shipped import DISTRIBUTION, config_files, copy_configs, version

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))


def test_configs_are_reachable_as_package_resources():
    files = config_files()
    assert [f.name for f in files] == SHIPPED and "smoke.yaml" in SHIPPED
    for f in files:  # the very bytes of the top-level configs/ (their one source)
        assert f.read_bytes() == (ROOT / "configs" / f.name).read_bytes()


def test_init_copies_the_configs_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["init", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "configs").iterdir()) == SHIPPED
    assert load_config(tmp_path / "configs" / "smoke.yaml").name == "smoke"  # a config that loads
    hint = capsys.readouterr().out.splitlines()[-1]
    assert hint == (f"try: harness run {tmp_path}/configs/first.yaml --out {tmp_path}/results/first && "
                    f"harness report {tmp_path}/results/first")  # the results land in DIR, from anywhere

    edited = tmp_path / "configs" / "bench.yaml"
    edited.write_text("name: mine\n")
    assert main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "would overwrite" in err and "bench.yaml" in err and "--force" in err
    assert edited.read_text() == "name: mine\n"
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert edited.read_bytes() == (ROOT / "configs" / "bench.yaml").read_bytes()
    with pytest.raises(FileExistsError):
        copy_configs(tmp_path / "configs")


def test_version(capsys):
    try:
        expected = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        expected = harness.__version__
    assert version() == expected
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"harness {expected}"


@pytest.mark.slow
def test_wheel_holds_configs_license_and_py_typed(tmp_path):
    """Build the wheel (no network: the build backend already installed) and look inside it."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip("building offline needs setuptools>=77 installed (pyproject's build requirement)")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("rnn_ablation_harness-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        assert z.read("harness/configs/smoke.yaml") == (ROOT / "configs" / "smoke.yaml").read_bytes()
    assert {f"harness/configs/{n}" for n in SHIPPED} <= names
    assert "harness/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "Name: rnn-ablation-harness" in meta and "License-Expression: MIT" in meta
    assert "Provides-Extra: hf" in meta
