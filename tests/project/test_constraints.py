"""constraints.txt pins what a fresh clone installs: every requirement within its range, every package the
project needs (its dependencies' dependencies too) pinned, and this environment holding exactly those."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, line in enumerate((ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version and ";" not in line, f"constraints.txt:{number}: not name==version: {line!r}"
        assert canonicalize_name(name) not in pins, f"constraints.txt:{number}: {name} pinned twice"
        pins[canonicalize_name(name)] = version
    return pins


#: What the venv brings itself (pip freeze leaves them out too): spacy names setuptools without a range.
INSTALLERS = {"pip", "setuptools", "wheel"}


def _project() -> dict[str, object]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project: dict[str, object] = pyproject["project"]
    return project


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**default_environment(), "extra": e}) for e in extras or {""})


def _direct_requirements() -> list[Requirement]:
    project = _project()
    written = [*project["dependencies"], *project["optional-dependencies"]["dev"]]  # type: ignore[index]
    bench = (ROOT / "bench" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    written += [line for line in bench if line.strip() and not line.startswith("#")]
    return [Requirement(text) for text in written]


def test_every_requirement_is_pinned_within_its_range() -> None:
    pins = _pins()
    for requirement in _direct_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in constraints.txt: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[name]}, outside pyproject's {requirement}"
        )


def test_what_the_project_needs_is_pinned_and_installed_as_pinned() -> None:
    # The whole tree from the project and its dev extra: a dependency's own dependency left unpinned would
    # install whatever release is newest on the day of the clone.
    pins = _pins()
    seen: set[str] = set()
    todo: list[tuple[str, set[str]]] = [("grassroots-gateway", {"dev"})]
    while todo:
        name, extras = todo.pop()
        key = f"{canonicalize_name(name)}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        if canonicalize_name(name) in INSTALLERS:
            continue
        distribution = metadata.distribution(name)
        pinned = pins.get(canonicalize_name(name))
        if canonicalize_name(name) != "grassroots-gateway":
            assert pinned is not None, f"{name} (the project needs it) is not in constraints.txt: make lock"
            assert distribution.version == pinned, (
                f"{name} {distribution.version} is installed, constraints.txt pins {pinned}: run make setup "
                "again (it installs with -c constraints.txt)"
            )
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if _applies(requirement, extras):
                todo.append((requirement.name, set(requirement.extras)))
    assert len(seen) > 50  # the walk reached the tree, not the project alone
