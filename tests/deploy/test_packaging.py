"""The wheel ships every sub-package, and resources/ and sensors/ only under their bioscan_ names.

setuptools' package list in pyproject.toml is explicit (resources/ and sensors/ are renamed on
install), so a new sub-package that is not added there would silently be missing from the
image while every test, run from the checkout, still passes.
"""

from __future__ import annotations

import shutil
import tomllib
import zipfile
from pathlib import Path

from tests.helpers import REPO, python, run

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# package name -> folder, for the packages whose folder is not their dotted name
RENAMED = SETUPTOOLS["package-dir"]
ROOT_PACKAGES = {"bioscan_assets": "bioscan_assets", **RENAMED}


def packages_on_disk() -> set[str]:
    """Every folder with an __init__.py under the three roots, as the name it installs under."""
    found = set()
    for package, folder in ROOT_PACKAGES.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            found.add(".".join((package, *parts)))
    return found


def test_pyproject_lists_every_package() -> None:
    listed = set(SETUPTOOLS["packages"])
    on_disk = packages_on_disk()
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - on_disk == set(), "listed in pyproject.toml but not a package folder"


def test_wheel_holds_renamed_packages_and_no_bare_top_level_names(tmp_path: Path) -> None:
    # ~5 s on 2 cores. Built from a copy: in-tree would leave build/ and *.egg-info behind.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ROOT_PACKAGES.values():
        shutil.copytree(REPO / folder, source / folder, ignore=skip)
    dist = tmp_path / "dist"
    command = ["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    run(python(*command, source, "-w", dist), timeout=300)
    (wheel,) = dist.glob("bioscan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}

    assert {"bioscan_assets", "bioscan_resources", "bioscan_sensors"} <= top_level
    assert not top_level & {"resources", "sensors"}, sorted(top_level)
    for package in SETUPTOOLS["packages"]:
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    assert any(n.startswith("bioscan_assets/demo_data/") for n in names)
    assert any(n.startswith("bioscan_assets/config/") for n in names)
