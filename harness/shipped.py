"""What ships inside the package: the example configs (`harness init`) and the version (`--version`).

The configs' one source is the checkout's top-level `configs/` (what the Makefile, README and tests
name); `harness/configs` is a symbolic link to it, so setuptools copies the files into the wheel as
package data and `importlib.resources` finds them in a checkout, an editable install and a wheel.
"""

from __future__ import annotations

import shutil
from importlib import metadata, resources
from importlib.abc import Traversable
from pathlib import Path

from harness import __version__

DISTRIBUTION = "rnn-ablation-harness"  # the name on the package index; the import and command are `harness`


def version() -> str:
    """The installed distribution's version, else (running from a checkout) harness.__version__."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return __version__


def config_files() -> list[Traversable]:
    """The shipped configs (*.yaml), sorted by name."""
    folder = resources.files("harness") / "configs"
    if not folder.is_dir():
        raise FileNotFoundError(f"the package has no configs folder ({folder}); reinstall it")
    return sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name)


def copy_configs(dest: str | Path, force: bool = False) -> list[Path]:
    """Copy the shipped configs into `dest` (created if needed); the paths written.

    Refuses (FileExistsError naming them) if any would overwrite a file, unless `force`; then
    nothing is written at all.
    """
    dest = Path(dest)
    files = config_files()
    clash = [dest / f.name for f in files if (dest / f.name).exists()]
    if clash and not force:
        raise FileExistsError(", ".join(map(str, clash)))
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        with f.open("rb") as src, (dest / f.name).open("wb") as out:
            shutil.copyfileobj(src, out)
        written.append(dest / f.name)
    return written
