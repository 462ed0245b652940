"""Unmasking an FF1 pseudonym read before `keys rotate`, after it (README "Unmask", "Keys"): the steward names
the key it was made with; naming another key of the ring (most often the active one) is told which key made
it, not that the pseudonym belongs to another dataset."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from demoworld.world import build_world
from gateway.keys import load_masking_keyring, save_masking_keyring
from gateway.settings import Settings
from masking import BindContext, KeyRing, mask_value
from tests.gateway.test_masking_api import _lift_opening_hours, api, events_of, ok, refused
from tests.stack import Stack, stack_fixture


def _rotate_before_the_gateway_starts(database_url: str) -> dict[str, str]:
    """`grassroots keys rotate` between the seed and the gateway's start: k1 decrypt-only, k2 active."""
    settings = Settings(data_dir=Path(str(make_url(database_url).database)).parent)
    ring = load_masking_keyring(settings)
    ring.rotate()
    save_masking_keyring(settings, ring)
    return {}


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    scenarios = _lift_opening_hours(tmp_path_factory.mktemp("scenarios"))
    yield from stack_fixture(
        "sqlite",
        tmp_path_factory,
        extra_env={"GRASSROOTS_SCENARIOS_PATH": str(scenarios)},
        before_gateway=_rotate_before_the_gateway_starts,
    )


def _pseudonym_under(stack: Stack, key_id: str, id_number: str) -> str:
    """The residents.id_number FF1 pseudonym ``key_id`` made while it was the active key."""
    stored = json.loads((stack.data_dir / "keys" / "masking-keyring.json").read_text())
    for key in stored["keys"]:
        key["status"] = "active" if key["key_id"] == key_id else "decrypt_only"
    kek = bytes.fromhex((stack.data_dir / "keys" / "masking-kek.key").read_text().strip())
    ring = KeyRing.from_json(kek, json.dumps(stored))
    context = BindContext(dataset="residents", field="id_number", keys=ring)
    return str(mask_value("ff1_id", id_number, context))


def test_a_pseudonym_unmasked_under_another_key_of_the_ring_is_told_the_key_that_made_it(
    rotated: Stack,
) -> None:
    stack = rotated
    resp = stack.get(stack.records_url, "cadre_a", scenario="DIBAO_REVIEW", page_size=1)
    assert resp.status_code == 200, resp.text
    record_id = resp.json()["items"][0]["id"]
    clear = next(r.id_number for r in build_world().residents if r.id == record_id)
    before_rotation = _pseudonym_under(stack, "k1", clear)
    ask = {"value": before_rotation, "dataset": "residents", "field": "id_number",
           "purpose": "低保复核核实身份"}  # fmt: skip

    # The steward names the active key, as the missing_key_id message's list makes likely after a rotation.
    # It said not_issued_for_dataset (403: "check which dataset it came from; another department's
    # steward unmasks it"), though it was this dataset's pseudonym under k1.
    resp = api(stack, "POST", "/unmask", "ca_steward", body={**ask, "key_id": "k2"})
    out = refused(resp, 422, "wrong_key_id")
    assert "不是用密钥 k2 生成的，而是用 k1" in out["message"] and "--key-id" in out["message"]
    assert "not made with key k2 but with k1" in out["message_en"]
    assert clear not in resp.text and clear[6:17] not in resp.text
    failed = events_of(stack, "masking.unmask_failed")[-1]
    assert (failed["outcome"], failed["body"]["reason"]) == ("refused", "wrong_key_id")
    assert clear not in json.dumps(failed["body"])

    # Named right, it opens.
    resp = api(stack, "POST", "/unmask", "ca_steward", body={**ask, "key_id": "k1"})
    assert ok(resp)["value"] == clear

    # A number this dataset never served is still not issued for it, under any key.
    never_served = "11010519491231002X"
    assert never_served not in {r.id_number for r in build_world().residents}
    other = {**ask, "value": _pseudonym_under(stack, "k1", never_served), "key_id": "k2"}
    refused(api(stack, "POST", "/unmask", "ca_steward", body=other), 403, "not_issued_for_dataset")
