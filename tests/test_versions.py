"""The installed dependencies satisfy pyproject's floors (`make install` installs exactly the floors,
so a green suite means the floors are versions the suite passes on)."""
import importlib.metadata as md
import importlib.util
from pathlib import Path

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("floors", ROOT / ".ci" / "floors.py")
floors_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(floors_module)
FLOORS = floors_module.floors(ROOT / "pyproject.toml")


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_installed_version_meets_the_floor(name):
    try:
        installed = md.version(name)
    except md.PackageNotFoundError:
        pytest.skip(f"{name} is not installed (an extra make install does not add)")
    assert Version(installed).release >= Version(FLOORS[name]).release, (name, installed, FLOORS[name])


def test_floors_cover_the_core_stack():
    for name in ("torch", "transformers", "peft", "numpy", "bm25s", "fastapi"):
        assert name in FLOORS, f"{name} has no floor in pyproject.toml"
