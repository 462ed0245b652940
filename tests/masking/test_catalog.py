from __future__ import annotations

from pathlib import Path

import pytest

from masking import Catalog, CatalogError, Level, SemanticType, UnknownDatasetError, load_catalog

RESIDENTS = {
    # field: (level, semantic type)
    "id": (Level.L1, SemanticType.RECORD_ID),
    "name": (Level.L3, SemanticType.PERSON_NAME),
    "id_number": (Level.L4, SemanticType.ID_NUMBER),
    "mobile": (Level.L3, SemanticType.MOBILE),
    "address": (Level.L3, SemanticType.ADDRESS),
    "birth_date": (Level.L3, SemanticType.BIRTH_DATE),
    "household_no": (Level.L3, SemanticType.HOUSEHOLD_NO),
    "dibao_status": (Level.L4, SemanticType.BENEFIT_STATUS),
    "village_code": (Level.L1, SemanticType.DIVISION_CODE),
    "remark": (Level.L3, SemanticType.FREE_TEXT),
}


def test_packaged_catalog_classifies_every_residents_field(catalog: Catalog) -> None:
    ds = catalog.dataset("residents")
    assert ds.owner_department == "civil_affairs"
    assert ds.provider_system == "civil-affairs-registry"
    assert ds.record_id_field == "id"
    assert {name: (f.level, f.semantic_type) for name, f in ds.fields.items()} == RESIDENTS
    assert ds.fields["dibao_status"].allowed_values == ("在保", "停保", "未申请")
    assert set(ds.quasi_identifiers) == {"address", "birth_date", "village_code"}


def test_unknown_dataset_is_an_error_not_an_empty_catalog(catalog: Catalog) -> None:
    with pytest.raises(UnknownDatasetError) as exc:
        catalog.dataset("taxes")
    assert "taxes" in exc.value.message_en and exc.value.message_zh


@pytest.mark.parametrize(
    ("raw", "level"),
    [(1, Level.L1), (4, Level.L4), ("L2", Level.L2), ("important", Level.IMPORTANT), ("核心", Level.CORE)],
)
def test_level_parsing(raw: object, level: Level) -> None:
    assert Level.parse(raw) is level


@pytest.mark.parametrize("raw", [0, 5, True, "L5", "secret", None])
def test_level_parsing_rejects(raw: object) -> None:
    with pytest.raises(ValueError):
        Level.parse(raw)


GOOD = """
schema_version = 1
[tags]
base = ["身份信息"]
[datasets.d]
owner_department = "x"
provider_system = "s"
record_id_field = "id"
[datasets.d.fields.id]
level = 1
semantic_type = "record_id"
[datasets.d.fields.mobile]
level = 3
semantic_type = "mobile"
tags = ["身份信息"]
"""

BAD_CASES = [
    # (replace this, with this, the entry the error must name)
    ('semantic_type = "mobile"', 'semantic_type = "phone"', "datasets.d.fields.mobile.semantic_type"),
    ("level = 3", "level = 7", "datasets.d.fields.mobile.level"),
    ("level = 3\n", "", "datasets.d.fields.mobile.level"),
    ('tags = ["身份信息"]', 'tags = ["未登记"]', "datasets.d.fields.mobile.tags"),
    ('record_id_field = "id"', 'record_id_field = "nope"', "datasets.d.record_id_field"),
    ("level = 1", "level = 3", "datasets.d.fields.id"),
    ('provider_system = "s"', "", "datasets.d.provider_system"),
    ('semantic_type = "mobile"', 'semantic_type = "mobile"\ncolour = "red"', "datasets.d.fields.mobile"),
    ("schema_version = 1", "schema_version = 2", "schema_version"),
    ("[tags]", "[tags", "<toml>"),
]


def test_a_good_catalog_loads(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(GOOD, encoding="utf-8")
    assert load_catalog(path).level_of("d", "mobile") is Level.L3


@pytest.mark.parametrize(("old", "new", "entry"), BAD_CASES)
def test_validation_errors_name_file_and_entry(tmp_path: Path, old: str, new: str, entry: str) -> None:
    assert old in GOOD
    path = tmp_path / "broken-catalog.toml"
    path.write_text(GOOD.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(CatalogError) as exc:
        load_catalog(path)
    assert exc.value.path == str(path)
    assert exc.value.entry == entry
    assert str(path) in exc.value.message_en and entry in exc.value.message_en
    assert exc.value.message_zh


@pytest.mark.parametrize(
    ("typed", "named"),
    [
        # the Chinese line said only 使用了未登记的标签, without the tag or the declared ones
        ("身份信", "使用了未登记的标签 身份信；已登记的标签："),
        # the English line repeated a phone number typed as a tag
        ("13812345678", "使用了未登记的标签；已登记的标签："),
    ],
)
def test_an_undeclared_tag_is_named_with_the_declared_ones_unless_it_is_personal_data(
    tmp_path: Path, typed: str, named: str
) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(GOOD.replace('tags = ["身份信息"]', f'tags = ["{typed}"]', 1), encoding="utf-8")
    with pytest.raises(CatalogError) as exc:
        load_catalog(path)
    assert named in exc.value.message_zh and "身份信息" in exc.value.message_zh
    assert "declared: " in exc.value.message_en and "身份信息" in exc.value.message_en
    assert ("13812345678" in exc.value.message_zh + exc.value.message_en) is False


def test_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as exc:
        load_catalog(tmp_path / "absent.toml")
    assert exc.value.entry == "<file>"
