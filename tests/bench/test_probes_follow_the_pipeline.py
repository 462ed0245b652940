"""The probes call the data path's stage functions directly, and nothing else runs them: a stage whose
signature changed left ``bench.probe_stage_cpu`` failing with a TypeError (``mask`` gained its
``subject_refs``) until someone ran it. mypy (strict, as the packages are checked) holds them to the
pipeline's signatures; the probes' imports are taken as they are, not checked again here."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

REPO = Path(__file__).resolve().parents[2]
PROBES = ("bench/probe_stage_cpu.py", "bench/probe_request_cpu.py")


@pytest.mark.parametrize("probe", PROBES)
def test_the_probe_calls_the_pipeline_as_it_is(probe: str) -> None:
    config = str(REPO / "pyproject.toml")
    out, err, status = api.run(["--follow-imports=silent", "--config-file", config, str(REPO / probe)])
    assert status == 0, out + err
