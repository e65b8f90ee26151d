"""Print the dependency floors of pyproject.toml as pins (``name==version``), for ``pip install -c``.

``make install`` installs exactly the floors, so the suite (and CI) runs on the versions pyproject
promises; tests/test_versions.py checks the installed versions against the same floors.
"""
import re
import sys
import tomllib
from pathlib import Path

FLOOR = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][^,;\s]*)\s*$")


def floors(pyproject: Path) -> dict[str, str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    out = {}
    for req in reqs:
        m = FLOOR.match(req)
        if m:
            out[m.group(1)] = m.group(2)
    return out


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    skip = set(sys.argv[1:])   # e.g. vllm: a floor no test runs on
    for name, version in sorted(floors(root / "pyproject.toml").items()):
        if name not in skip:
            print(f"{name}=={version}")
