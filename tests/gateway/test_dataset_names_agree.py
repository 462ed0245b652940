"""One dataset, one name: the scenario catalogue (policies/scenarios.toml, ``name_zh``) names a dataset in
refusals and grant messages, the field catalogue (masking/data/catalog.toml, ``title``) in transparency
answers and who-read. The walk-through found a village user refused for 「居民信息」 and a resident told
their 居民登记信息 was read: the same data under two names. The libraries never import each other, so the
gateway's tests hold the two shipped files to each other."""

from __future__ import annotations

import pytest

from masking import load_catalog
from policies import load_scenarios

SCENARIOS = load_scenarios()
FIELDS = load_catalog()


def test_every_dataset_a_scenario_names_is_catalogued() -> None:
    assert set(SCENARIOS.datasets) <= set(FIELDS.datasets)


@pytest.mark.parametrize("dataset", sorted(SCENARIOS.datasets))
def test_both_catalogues_give_a_dataset_the_same_name_and_owner(dataset: str) -> None:
    policy, fields = SCENARIOS.datasets[dataset], FIELDS.dataset(dataset)
    assert policy.name_zh == fields.title, (
        f"{dataset}: scenarios.toml says {policy.name_zh!r}, catalog.toml {fields.title!r}"
    )
    assert (policy.owner_department, policy.provider_system) == (
        fields.owner_department,
        fields.provider_system,
    )
