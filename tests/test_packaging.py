"""constraints.txt pins versions that pyproject.toml's requirements allow."""
import pytest
from packaging.requirements import Requirement

from helpers import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_every_pin_satisfies_the_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"] + sum(project["optional-dependencies"].values(), [])]
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split() if "==" in line)
    pins = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    checked = [r.name for r in requirements if r.name.lower() in pins]
    assert {"torch", "lightning", "transformers", "timm", "litdata", "torchmetrics", "jsonargparse"} <= set(checked)
    for requirement in requirements:
        version = pins.get(requirement.name.lower())
        assert version is None or requirement.specifier.contains(version, prereleases=True), (requirement, version)
    bounded = {r.name for r in requirements if any(s.operator == "<" for s in r.specifier)}
    assert {"torch", "lightning", "transformers", "timm", "litdata", "torchmetrics", "jsonargparse"} <= bounded
