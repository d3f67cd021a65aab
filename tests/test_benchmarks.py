"""The scripts under benchmarks/: a missing or empty results folder, or a missing config, is one line on
stderr and exit 2, before any work. compare_conclusions.py and check_power.py are tested in depth in
tests/report/test_compare_conclusions.py; here only as scripts (a subprocess each)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _refused(script: str, argv: list[str], monkeypatch, capsys) -> str:
    mod = _module(script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv])
    with pytest.raises(SystemExit) as e:
        mod.main()
    out, err = capsys.readouterr()
    assert e.value.code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"{script}.py: ")
    return err


@pytest.mark.parametrize("script, flag, extra", [("adaptive_saving", "--simulate", []),
                                                 ("adaptive_saving", "--replay", []),
                                                 ("overhead", "--existing", ["--wall", "1"])])
def test_a_missing_or_empty_results_folder_is_one_line(tmp_path, monkeypatch, capsys, script, flag, extra):
    err = _refused(script, [flag, str(tmp_path / "nowhere"), *extra], monkeypatch, capsys)
    assert f"{flag} {tmp_path / 'nowhere'}: no such folder" in err
    (tmp_path / "empty" / "trials").mkdir(parents=True)
    err = _refused(script, [flag, str(tmp_path / "empty"), *extra], monkeypatch, capsys)
    assert "no finished trial in it" in err
    (tmp_path / "file").write_text("")
    assert "not a folder" in _refused(script, [flag, str(tmp_path / "file"), *extra], monkeypatch, capsys)


@pytest.mark.parametrize("script", ["adaptive_saving", "overhead"])
def test_a_missing_config_is_one_line(tmp_path, monkeypatch, capsys, script):
    assert "--config nope.yaml: no such file" in _refused(script, ["--config", "nope.yaml"], monkeypatch, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("script, argv, says", [
    ("compare_conclusions", ["nowhere_a", "nowhere_b"], "compare_conclusions: nowhere_a: no such folder"),
    ("compare_conclusions", ["a", "b", "--margin", "0"],
     "compare_conclusions: argument --margin: expected a difference"),
    ("check_power", ["--profiles", "nope"], "check_power: unknown profile 'nope'"),
])
def test_the_reproduction_scripts_refuse_bad_arguments_in_one_line(tmp_path, script, argv, says):
    """compare_conclusions.py and check_power.py as scripts (tested in depth in
    tests/report/test_compare_conclusions.py): bad arguments are one line on stderr and exit 2."""
    import subprocess

    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *argv], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1 and r.stderr.startswith(says), r.stderr
