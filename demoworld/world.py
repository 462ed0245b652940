"""The deterministic demo world: an administrative tree, its residents and the demo identities.

Everything here is synthetic. Division codes follow the real 12-digit 统计用区划代码 format
(``PP CC DD TTT VVV``) on a real county (上海市崇明区, 310151) and real town codes; the village and community
names under them are invented. Residents are generated with faker (``zh_CN``) and a seeded PRNG, so one
seed always yields byte-identical output (see :meth:`World.to_json`) for a given faker version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from stdnum.cn import ric, uscc

DEFAULT_SEED = 20261122

Level = Literal["province", "city", "county", "township", "village"]
Kind = Literal["village", "community"]
DibaoStatus = Literal["在保", "停保", "未申请"]
HouseType = Literal["农村自建房", "商品房", "售后公房"]
HouseUse = Literal["自住", "自住兼出租"]
Relation = Literal["户主", "配偶", "子女", "租客"]

#: A micro-grid (微网格) code: the 12-digit code of its village or community, ``-G`` and a two-digit
#: number 01-99 (``310151101201-G03``). Fixed width, so no code is a string prefix of another
#: (``-G1`` is not a code at all, and ``-G01`` never matches ``-G10``); the ``-G`` keeps it from ever
#: being read as a division code or a number.
GRID_CODE = re.compile(r"^([0-9]{12})-G(0[1-9]|[1-9][0-9])$", re.ASCII)

# Significant lengths of a 12-digit division code, one per level (PP CC DD TTT VVV).
_LEVEL_LENGTHS: tuple[tuple[Level, int], ...] = (
    ("province", 2),
    ("city", 4),
    ("county", 6),
    ("township", 9),
    ("village", 12),
)

# GB 32100-2015: position 1 is the registration-authority code ("5" = 民政, civil affairs), position 2 the
# entity class that authority assigns (the 2015 table lists 1 社会团体, 2 民办非企业单位, 3 基金会, 9 其他);
# positions 3-8 are the registering authority's GB/T 2260 county code. Village and residents' committees
# became 基层群众性自治组织特别法人 in 2017 (民法总则 art. 101) and are coded by the county civil-affairs
# bureau under a class of their own; "4" is used here for it (the ministry's notice was not at hand to
# confirm that digit; the check character is computed over whatever prefix is chosen).
COMMITTEE_USCC_PREFIX = "54"

# GB 11714-1997 organisation-code check character weights (positions 9-17 of a USCC are that code).
_GB11714_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

# Mobile number segments in use by the three national carriers (MIIT numbering plan).
_MOBILE_PREFIXES = (
    *(f"13{d}" for d in range(10)),
    *("147", "150", "151", "152", "153", "155", "156", "157", "158", "159", "166", "176", "177", "178"),
    *(f"18{d}" for d in range(10)),
    *("198", "199"),
)

# GB 11643-1999 §5.1: the address code is the county where the number was first issued, and it must be
# a county that existed then. Chongming was 310210 until 1982, 310230 until 2016 and 310151 since, so the
# local code is chosen by birth year; python-stdnum's table checks exactly this.
_LOCAL_BIRTHPLACES = ((1982, "310210"), (2016, "310230"), (9999, "310151"))
# People who married or moved in: counties across the river and further inland.
_INCOMER_BIRTHPLACES = ("320623", "320682", "340822")


@dataclass(frozen=True, slots=True)
class Division:
    """One node of the administrative tree (统计用区划代码)."""

    code: str
    name: str
    level: Level
    parent: str | None
    kind: Kind | None = None
    credit_code: str | None = None


@dataclass(frozen=True, slots=True)
class Resident:
    """One resident as the civil-affairs registry holds them. Every field but ``id`` is synthetic PII."""

    id: str
    name: str
    id_number: str
    mobile: str
    address: str
    birth_date: str
    household_no: str
    dibao_status: DibaoStatus
    village_code: str
    remark: str

    def __repr__(self) -> str:
        # Even synthetic personal data stays out of logs and tracebacks (GB/T 35273 §6.3 habit).
        return f"Resident(id={self.id!r}, village_code={self.village_code!r})"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Identity:
    """A demo user of the platform, as the development identity provider describes them."""

    username: str
    user_id: str
    display_name: str
    role: str
    org: str
    department: str | None = None
    office: str | None = None
    #: Micro-grid codes (微网格) assigned to a grid worker; the identity provider is the source of truth
    #: and carries them in the token's ``grids`` claim.
    grids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class MicroGrid:
    """A micro-grid (微网格): the households a grid worker looks after, within one village or community."""

    code: str
    name: str
    village_code: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class StandardAddress:
    """A standard address (标准地址, the 一标 of 一标三实): one coded place a house stands at."""

    code: str
    address: str
    village_code: str
    grid_code: str

    def __repr__(self) -> str:
        return f"StandardAddress(code={self.code!r}, grid_code={self.grid_code!r})"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class House:
    """A house (实有房屋) at a standard address, as the person-house registry holds it."""

    id: str
    address_code: str
    address: str
    house_type: HouseType
    house_use: HouseUse
    owner_name: str
    owner_id_number: str
    owner_mobile: str
    village_code: str
    grid_code: str

    def __repr__(self) -> str:
        return f"House(id={self.id!r}, grid_code={self.grid_code!r})"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Occupant:
    """A person living in a house (实有人口). ``resident_id`` links to the civil-affairs registry's
    resident; it is empty for a tenant registered elsewhere."""

    id: str
    house_id: str
    resident_id: str
    name: str
    id_number: str
    relation: Relation
    mobile: str
    village_code: str
    grid_code: str

    def __repr__(self) -> str:
        return f"Occupant(id={self.id!r}, grid_code={self.grid_code!r})"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class World:
    seed: int
    divisions: tuple[Division, ...]
    residents: tuple[Resident, ...]
    identities: tuple[Identity, ...]
    village_a: str
    village_b: str
    village_c: str
    grids: tuple[MicroGrid, ...] = ()
    addresses: tuple[StandardAddress, ...] = ()
    houses: tuple[House, ...] = ()
    occupants: tuple[Occupant, ...] = ()
    _by_code: dict[str, Division] = field(default_factory=dict, repr=False, compare=False)

    def division(self, code: str) -> Division:
        return self._by_code[normalise_division_code(code)]

    def identity(self, username: str) -> Identity:
        for identity in self.identities:
            if identity.username == username:
                return identity
        raise KeyError(username)

    def residents_of(self, code: str) -> list[Resident]:
        """Residents whose village lies within ``code`` (a village, township, county, ... code)."""
        prefix = significant_prefix(code)
        return [r for r in self.residents if r.village_code.startswith(prefix)]

    def children_of(self, code: str) -> list[Division]:
        parent = normalise_division_code(code)
        return [d for d in self.divisions if d.parent == parent]

    @property
    def committees(self) -> list[Division]:
        return [d for d in self.divisions if d.level == "village"]

    def grids_of(self, village_code: str) -> list[MicroGrid]:
        village = normalise_division_code(village_code)
        return [g for g in self.grids if g.village_code == village]

    def houses_in(self, grid_codes: Iterable[str]) -> list[House]:
        """Houses of the given micro-grids."""
        wanted = set(grid_codes)
        return [h for h in self.houses if h.grid_code in wanted]

    def occupants_in(self, grid_codes: Iterable[str]) -> list[Occupant]:
        """Occupants of the houses of the given micro-grids."""
        wanted = set(grid_codes)
        return [o for o in self.occupants if o.grid_code in wanted]

    def to_dict(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "village_a": self.village_a,
            "village_b": self.village_b,
            "village_c": self.village_c,
            "divisions": [asdict(d) for d in self.divisions],
            "identities": [i.to_dict() for i in self.identities],
            "residents": [r.to_dict() for r in self.residents],
            "grids": [g.to_dict() for g in self.grids],
            "addresses": [a.to_dict() for a in self.addresses],
            "houses": [h.to_dict() for h in self.houses],
            "occupants": [o.to_dict() for o in self.occupants],
        }

    def to_json(self) -> str:
        """Canonical JSON of the whole world: same seed, same bytes."""
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    def identities_json(self) -> str:
        """The demo identities as a JSON array (what ``grassroots dev-users --json`` prints)."""
        return json.dumps([i.to_dict() for i in self.identities], ensure_ascii=False, indent=2)


def normalise_division_code(code: str) -> str:
    """Right-pad a shorter division code (``31``, ``310151``) to the 12-digit form."""
    if not code.isdigit() or not code.isascii() or len(code) > 12:
        raise ValueError("a division code is 1 to 12 ASCII digits")
    return code.ljust(12, "0")


def significant_prefix(code: str) -> str:
    """The part of a division code that identifies it: trailing all-zero level groups stripped.

    ``310151101000`` -> ``310151101``; ``310000000000`` -> ``31``; the national root -> ``""``.
    """
    full = normalise_division_code(code)
    end = 12
    for start, stop in ((9, 12), (6, 9), (4, 6), (2, 4), (0, 2)):
        if end == stop and set(full[start:stop]) == {"0"}:
            end = start
    return full[:end]


def level_of(code: str) -> Level | None:
    """The level of a division code, or None for the national root."""
    length = len(significant_prefix(code))
    for level, level_length in _LEVEL_LENGTHS:
        if length == level_length:
            return level
    return None


def grid_code(village_code: str, number: int) -> str:
    """The code of micro-grid ``number`` (1-99) of a village or community (see ``GRID_CODE``)."""
    village = normalise_division_code(village_code)
    if level_of(village) != "village" or not 1 <= number <= 99:
        raise ValueError("a micro-grid is numbered 1-99 within a village or community")
    return f"{village}-G{number:02d}"


def village_of_grid(code: str) -> str:
    """The village or community a micro-grid code lies in; ValueError when it is not a grid code."""
    found = GRID_CODE.fullmatch(code)
    if found is None or level_of(found.group(1)) != "village":
        raise ValueError("a micro-grid code is a village code, '-G' and two digits 01-99")
    return found.group(1)


def gb11714_check_character(body: str) -> str:
    """GB 11714-1997 §5: check character of an 8-character organisation-code body (MOD 11)."""
    total = sum(int(ch, 36) * w for ch, w in zip(body, _GB11714_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def committee_credit_code(county: str, rng: random.Random) -> str:
    """A GB 32100-2015 unified social credit code for a village or residents' committee."""
    body = "".join(rng.choice("0123456789") for _ in range(8))
    org_code = body + gb11714_check_character(body)
    partial = COMMITTEE_USCC_PREFIX + county[:6] + org_code
    return uscc.validate(partial + uscc.calc_check_digit(partial))


def resident_id_number(birthplace: str, birth: dt.date, sequence: int) -> str:
    """GB 11643-1999: address code + YYYYMMDD + 3-digit sequence (odd for men) + ISO 7064 MOD 11-2 check."""
    body = f"{birthplace}{birth:%Y%m%d}{sequence:03d}"
    # python-stdnum's calc_check_digit expects the number with a placeholder check character.
    return body + ric.calc_check_digit(body + "0")


def stable_id(prefix: str, *parts: object) -> str:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()
    return prefix + digest[:8]


def user_id_for(username: str) -> str:
    return "u-" + hashlib.sha256(f"grassroots-demo-user/{username}".encode()).hexdigest()[:10]


# --- the tree --------------------------------------------------------------------------------------------

_PROVINCE = ("310000000000", "上海市")
_CITY = ("310100000000", "市辖区")
_COUNTY = ("310151000000", "崇明区")
# Town codes 1xx are 镇 (县以下行政区划代码编制规则); committee codes 001-199 are 居民委员会 (社区) and
# 200-399 村民委员会, as the statistics division code assigns them.
_TOWNSHIPS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("101", "城桥镇", (("001", "鳌山社区"), ("201", "东风村"), ("202", "永乐村"), ("203", "新建村"))),
    ("102", "堡镇", (("001", "玉屏社区"), ("201", "星桥村"), ("202", "合丰村"))),
    ("103", "新河镇", (("001", "新河社区"), ("002", "明珠社区"), ("201", "井亭村"), ("202", "卫东村"))),
)
_VILLAGE_A = "310151101201"
_VILLAGE_B = "310151101202"
_VILLAGE_C = "310151102201"
_TOWNSHIP_A = "310151101000"
_TOWNSHIP_B = "310151102000"

_ROADS = ("人民路", "八一路", "育才路", "南门路", "公园路", "东门路")


def _build_divisions(rng: random.Random) -> list[Division]:
    county = _COUNTY[0]
    divisions = [
        Division(_PROVINCE[0], _PROVINCE[1], "province", None),
        Division(_CITY[0], _CITY[1], "city", _PROVINCE[0]),
        Division(county, _COUNTY[1], "county", _CITY[0]),
    ]
    for town_code, town_name, committees in _TOWNSHIPS:
        township = county[:6] + town_code + "000"
        divisions.append(Division(township, town_name, "township", county))
        for vvv, name in committees:
            kind: Kind = "community" if int(vvv) < 200 else "village"
            divisions.append(
                Division(
                    county[:6] + town_code + vvv,
                    name + ("居民委员会" if kind == "community" else "村民委员会"),
                    "village",
                    township,
                    kind=kind,
                    credit_code=committee_credit_code(county, rng),
                )
            )
    return divisions


# --- residents -------------------------------------------------------------------------------------------

_PLAIN_REMARKS = (
    "",
    "",
    "",
    "独居老人，网格员每周走访",
    "低保年审材料已齐",
    "持残疾人证（肢体二级）",
    "外出务工，常住外省",
    "新生儿，待办理医保",
    "家庭困难，已申请临时救助",
    "退役军人",
    "种植大户，承包土地十二亩",
    "患慢性病，需定期随访",
)


def _birthplace(birth: dt.date, rng: random.Random) -> str:
    if rng.random() < 0.15:
        for code in _INCOMER_BIRTHPLACES:
            if ric.is_valid(resident_id_number(code, birth, 1)):
                return code
    return next(code for until, code in _LOCAL_BIRTHPLACES if birth.year <= until)


def _birth_date(rng: random.Random, earliest: int, latest: int) -> dt.date:
    start = dt.date(earliest, 1, 1).toordinal()
    end = dt.date(latest, 12, 31).toordinal()
    return dt.date.fromordinal(rng.randint(start, end))


def _mobile(rng: random.Random) -> str:
    return rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


class _ResidentFactory:
    def __init__(self, seed: int) -> None:
        # Faker is imported here so a process that only serves stored data does not pay for it.
        from faker import Faker

        self.seed = seed
        self.rng = random.Random(seed)
        self.fake = Faker("zh_CN")
        self.fake.seed_instance(seed)
        self.id_numbers: set[str] = set()

    def id_number(self, birth: dt.date, male: bool) -> str:
        while True:
            sequence = self.rng.randrange(500) * 2 + (1 if male else 0)
            number = resident_id_number(_birthplace(birth, self.rng), birth, sequence)
            if number not in self.id_numbers:
                self.id_numbers.add(number)
                return ric.validate(number)

    def name(self, surname: str, male: bool) -> str:
        given = self.fake.first_name_male() if male else self.fake.first_name_female()
        return surname + given

    def remark(self) -> str:
        if self.rng.random() >= 0.2:
            return self.rng.choice(_PLAIN_REMARKS)
        male = self.rng.random() < 0.5
        relative = self.name(self.fake.last_name(), male)
        birth = _birth_date(self.rng, 1960, 2000)
        templates = (
            lambda: f"联系人电话{_mobile(self.rng)}",
            lambda: f"紧急联系人：{relative}，{_mobile(self.rng)}",
            lambda: f"其子{relative}身份证号{self.id_number(birth, True)}，在外务工",
            lambda: f"代办人{relative}（身份证{self.id_number(birth, male)}）",
        )
        return self.rng.choice(templates)()

    def address(self, committee: Division, township: Division) -> str:
        short = committee.name.removesuffix("村民委员会").removesuffix("居民委员会")
        place = f"上海市崇明区{township.name}{short}"
        if committee.kind == "village":
            return f"{place}{self.rng.randint(1, 12)}组{self.rng.randint(1, 80)}号"
        road, lane, number = self.rng.choice(_ROADS), self.rng.randint(1, 400), self.rng.randint(1, 30)
        room = self.rng.randint(1, 6) * 100 + self.rng.randint(1, 4)
        return f"{place}{road}{lane}弄{number}号{room}室"

    def residents_of(self, committee: Division, township: Division) -> list[Resident]:
        target = self.rng.randint(25, 40)
        residents: list[Resident] = []
        household = 0
        while len(residents) < target:
            household += 1
            household_no = f"{committee.code[6:]}{household:04d}"
            surname = self.fake.last_name()
            address = self.address(committee, township)
            dibao: DibaoStatus = self.rng.choices(("在保", "停保", "未申请"), weights=(12, 6, 82))[0]
            size = min(self.rng.randint(1, 4), target - len(residents))
            head_male = self.rng.random() < 0.55
            members: list[tuple[str, dt.date, bool]] = []
            head_birth = _birth_date(self.rng, 1938, 1995)
            members.append((self.name(surname, head_male), head_birth, head_male))
            if size >= 2:
                spouse_male = not head_male
                spouse_birth = _birth_date(self.rng, max(1936, head_birth.year - 5), head_birth.year + 5)
                members.append((self.name(self.fake.last_name(), spouse_male), spouse_birth, spouse_male))
            for _ in range(size - len(members)):
                child_male = self.rng.random() < 0.5
                child_birth = _birth_date(
                    self.rng, min(head_birth.year + 20, 2023), min(head_birth.year + 40, 2024)
                )
                members.append((self.name(surname, child_male), child_birth, child_male))
            for name, birth, male in members:
                index = len(residents)
                residents.append(
                    Resident(
                        id=stable_id("R", self.seed, committee.code, index),
                        name=name,
                        id_number=self.id_number(birth, male),
                        mobile=_mobile(self.rng),
                        address=address,
                        birth_date=birth.isoformat(),
                        household_no=household_no,
                        dibao_status=dibao,
                        village_code=committee.code,
                        remark=self.remark(),
                    )
                )
        return residents


# --- identities ------------------------------------------------------------------------------------------

# (username, display name, role, org, department, office). Usernames are fixed: README and tests use them.
_IDENTITIES: tuple[tuple[str, str, str, str, str | None, str | None], ...] = (
    ("cadre_a", "李春梅（东风村村委会）", "village_cadre", _VILLAGE_A, None, None),
    ("grid_a1", "周晓燕（东风村第1、2网格网格员）", "grid_worker", _VILLAGE_A, None, None),
    ("grid_a2", "顾卫东（东风村第3网格网格员）", "grid_worker", _VILLAGE_A, None, None),
    ("cadre_b", "王建国（永乐村村委会）", "village_cadre", _VILLAGE_B, None, None),
    ("cadre_c", "陈海燕（星桥村村委会）", "village_cadre", _VILLAGE_C, None, None),
    ("town_officer", "张志强（城桥镇人民政府）", "township_officer", _TOWNSHIP_A, None, None),
    ("county_officer", "刘洋（崇明区人民政府）", "county_officer", _COUNTY[0], None, None),
    ("ca_steward", "赵敏（区民政局数据管理员）", "data_steward", _COUNTY[0], "civil_affairs", None),
    ("ca_steward2", "陈芳（区民政局数据安全负责人）", "data_steward", _COUNTY[0], "civil_affairs", None),
    ("ca_sysadmin", "孙磊（区民政局系统管理员）", "system_admin", _COUNTY[0], "civil_affairs", None),
    ("hb_sysadmin", "黄涛（区卫健委系统管理员）", "system_admin", _COUNTY[0], "health", None),
    # The person-house registry (一标三实) belongs to the district public-security bureau.
    ("ps_steward", "沈俊（区公安分局数据管理员）", "data_steward", _COUNTY[0], "public_security", None),
    ("ps_steward2", "唐悦（区公安分局数据安全负责人）", "data_steward", _COUNTY[0], "public_security", None),
    ("ps_sysadmin", "邱峰（区公安分局系统管理员）", "system_admin", _COUNTY[0], "public_security", None),
    # One admission reviewer per office of the joint review (district plan, 准入联审).
    (
        "rv_gov_office",
        "周静（区政府办公室）",
        "admission_reviewer",
        _COUNTY[0],
        "district_government_office",
        "district_government_office",
    ),
    (
        "rv_services",
        "吴斌（区政务服务办）",
        "admission_reviewer",
        _COUNTY[0],
        "government_services",
        "government_services_office",
    ),
    (
        "rv_civil_affairs",
        "冯丽（区民政局）",
        "admission_reviewer",
        _COUNTY[0],
        "civil_affairs",
        "civil_affairs_bureau",
    ),
    (
        "rv_science",
        "何军（区科委）",
        "admission_reviewer",
        _COUNTY[0],
        "science_technology",
        "science_technology_commission",
    ),
    (
        "rv_operations",
        "许婷（区城运中心）",
        "admission_reviewer",
        _COUNTY[0],
        "city_operations",
        "city_operations_centre",
    ),
    ("rv_big_data", "曹阳（区大数据中心）", "admission_reviewer", _COUNTY[0], "big_data", "big_data_centre"),
    ("supervisor", "郑红（区纪委监委）", "supervisor", _COUNTY[0], None, None),
    ("auditor", "钱伟（区审计局）", "auditor", _COUNTY[0], None, None),
    # Township supervisors (镇纪委): each sees the complaints and incidents of its own town only.
    ("town_supervisor_a", "吴静（城桥镇纪委）", "supervisor", _TOWNSHIP_A, None, None),
    ("town_supervisor_b", "冯磊（堡镇纪委）", "supervisor", _TOWNSHIP_B, None, None),
    # The national level (the root code): sees every case, those whose registering office is not known too,
    # and alone may give such a case its jurisdiction.
    ("national_supervisor", "高明（部级监督机构）", "supervisor", "000000000000", None, None),
    ("platform_admin", "马骏（区大数据中心平台管理员）", "platform_admin", _COUNTY[0], None, None),
)


# Grid assignments (网格分配) of the demo grid workers. Every village and community has at least three
# micro-grids (see ``_GRIDS_PER_COMMITTEE``), so these codes exist in every seed's world.
_GRID_ASSIGNMENTS: dict[str, tuple[str, ...]] = {
    "grid_a1": (f"{_VILLAGE_A}-G01", f"{_VILLAGE_A}-G02"),
    "grid_a2": (f"{_VILLAGE_A}-G03",),
}


def build_identities() -> list[Identity]:
    return [
        Identity(
            username=username,
            user_id=user_id_for(username),
            display_name=display_name,
            role=role,
            org=org,
            department=department,
            office=office,
            grids=_GRID_ASSIGNMENTS.get(username, ()),
        )
        for username, display_name, role, org, department, office in _IDENTITIES
    ]


def build_world(seed: int = DEFAULT_SEED) -> World:
    """Build the demo world. Same seed, same world (and same :meth:`World.to_json` bytes)."""
    factory = _ResidentFactory(seed)
    divisions = _build_divisions(factory.rng)
    by_code = {d.code: d for d in divisions}
    residents: list[Resident] = []
    for committee in divisions:
        if committee.level == "village" and committee.parent is not None:
            residents.extend(factory.residents_of(committee, by_code[committee.parent]))
    if len({r.id for r in residents}) != len(residents):
        raise RuntimeError("resident id collision; choose another seed")
    # Built after every resident, from the same generators: the residents do not change with it.
    person_house = _PersonHouseBuilder(factory)
    for committee in divisions:
        if committee.level == "village":
            person_house.add_committee(committee, [r for r in residents if r.village_code == committee.code])
    keys = (
        [h.id for h in person_house.houses],
        [o.id for o in person_house.occupants],
        [a.code for a in person_house.addresses],
    )
    if any(len(set(k)) != len(k) for k in keys):
        raise RuntimeError("person-house id collision; choose another seed")
    return World(
        seed=seed,
        divisions=tuple(divisions),
        residents=tuple(residents),
        identities=tuple(build_identities()),
        village_a=_VILLAGE_A,
        village_b=_VILLAGE_B,
        village_c=_VILLAGE_C,
        grids=tuple(person_house.grids),
        addresses=tuple(person_house.addresses),
        houses=tuple(person_house.houses),
        occupants=tuple(person_house.occupants),
        _by_code=by_code,
    )


# --- the person-house registry (一标三实: standard addresses, micro-grids, houses, occupants) ----------

_GRIDS_PER_COMMITTEE = (3, 5)


def _natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key reading digit runs as numbers, so 2组 comes before 10组 and 9号 before 12号."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.findall(r"\d+|\D+", text)
    )


class _PersonHouseBuilder:
    """Houses, standard addresses and occupants from the households of the civil-affairs residents.

    A household lives in one house at its address. Each village or community is cut into 3-5
    micro-grids of neighbouring addresses (consecutive in 组/号 or road/lane order), as grids are
    drawn on the map. Some houses are partly let; their tenants are occupants with no civil-affairs
    record here (``resident_id`` empty), as people registered elsewhere (来沪人员) are.
    """

    def __init__(self, factory: _ResidentFactory) -> None:
        self.factory = factory
        self.rng = factory.rng
        self.grids: list[MicroGrid] = []
        self.addresses: list[StandardAddress] = []
        self.houses: list[House] = []
        self.occupants: list[Occupant] = []

    def add_committee(self, committee: Division, residents: Sequence[Resident]) -> None:
        seed = self.factory.seed
        short = committee.name.removesuffix("村民委员会").removesuffix("居民委员会")
        count = self.rng.randint(*_GRIDS_PER_COMMITTEE)
        grids = [
            MicroGrid(grid_code(committee.code, n), f"{short}第{n}网格", committee.code)
            for n in range(1, count + 1)
        ]
        self.grids.extend(grids)
        households: dict[str, list[Resident]] = {}
        for resident in residents:
            households.setdefault(resident.household_no, []).append(resident)
        places = sorted({members[0].address for members in households.values()}, key=_natural_key)
        grid_of_place: dict[str, str] = {}
        for index, place in enumerate(places):
            grid = grids[index * count // len(places)]
            grid_of_place[place] = grid.code
            self.addresses.append(
                StandardAddress(stable_id("A", seed, committee.code, index), place, committee.code, grid.code)
            )
        address_code = {a.address: a.code for a in self.addresses if a.village_code == committee.code}
        for household_no, members in households.items():
            self._add_house(committee, household_no, members, address_code, grid_of_place)

    def _add_house(
        self,
        committee: Division,
        household_no: str,
        members: Sequence[Resident],
        address_code: dict[str, str],
        grid_of_place: dict[str, str],
    ) -> None:
        seed, head = self.factory.seed, members[0]
        grid = grid_of_place[head.address]
        let = self.rng.random() < 0.2
        house_type: HouseType = (
            "农村自建房" if committee.kind == "village" else self.rng.choice(("商品房", "售后公房"))
        )
        house = House(
            id=stable_id("H", seed, household_no),
            address_code=address_code[head.address],
            address=head.address,
            house_type=house_type,
            house_use="自住兼出租" if let else "自住",
            owner_name=head.name,
            owner_id_number=head.id_number,
            owner_mobile=head.mobile,
            village_code=committee.code,
            grid_code=grid,
        )
        self.houses.append(house)
        for position, member in enumerate(members):
            # The factory lists a household as head, spouse (when two or more), then children.
            relation: Relation = "户主" if position == 0 else "配偶" if position == 1 else "子女"
            self.occupants.append(
                Occupant(
                    id=stable_id("P", seed, member.id),
                    house_id=house.id,
                    resident_id=member.id,
                    name=member.name,
                    id_number=member.id_number,
                    relation=relation,
                    mobile=member.mobile,
                    village_code=committee.code,
                    grid_code=grid,
                )
            )
        for tenant in range(self.rng.randint(1, 2) if let else 0):
            male = self.rng.random() < 0.5
            birth = _birth_date(self.rng, 1965, 2003)
            self.occupants.append(
                Occupant(
                    id=stable_id("P", seed, house.id, "tenant", tenant),
                    house_id=house.id,
                    resident_id="",
                    name=self.factory.name(self.factory.fake.last_name(), male),
                    id_number=self.factory.id_number(birth, male),
                    relation="租客",
                    mobile=_mobile(self.rng),
                    village_code=committee.code,
                    grid_code=grid,
                )
            )


def matches_any_prefix(village_code: str, prefixes: Sequence[str]) -> bool:
    return any(village_code.startswith(p) for p in prefixes)
