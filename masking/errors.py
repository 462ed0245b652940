"""The exception tree of the masking library.

Every error carries a Simplified Chinese message first and an English one, because a data steward or a
village user may read it (house style: bilingual, actionable). No error ever contains a field *value*,
a key or other personal data — only names of files, datasets, fields, rules and operators.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

# A name as a steward types a code: repeated in a message only in this shape (no run of digits long
# enough for an ID or phone number), since whatever was pasted into the wrong box ends up in the error.
_ECHOABLE = re.compile(r"(?!.*\d{7})[A-Za-z][A-Za-z0-9_.\-]{0,63}", re.ASCII)


def closest_name(typed: object, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The valid name `typed` most likely means (difflib's similarity ratio at least `cutoff`), or None:
    the one "did you mean" lookup behind every unknown-name message of the library."""
    if not isinstance(typed, str):
        return None
    close = difflib.get_close_matches(typed, list(choices), n=1, cutoff=cutoff)
    return close[0] if close else None


def unknown_name(what_zh: str, what_en: str, typed: object, choices: Sequence[str]) -> tuple[str, str]:
    """An "unknown name" message in Chinese and English: the name typed (when it looks like a code),
    the nearest valid name if one is close, then all of them."""
    shown = typed if isinstance(typed, str) and _ECHOABLE.fullmatch(typed) else None
    close = closest_name(typed, choices)
    zh = f"未知的{what_zh}" + (f" {shown}" if shown else "") + "；"
    zh += (f"是否指 {close}？" if close else "") + "可用的有：" + "、".join(choices)
    en = f"unknown {what_en}" + (f" {shown!r}" if shown else "") + "; "
    en += (f"did you mean {close}? " if close else "") + "valid: " + ", ".join(choices)
    return zh, en


class MaskingError(Exception):
    """Base class of every error raised by `masking`."""

    code: str = "masking_error"

    def __init__(self, message_zh: str, message_en: str) -> None:
        super().__init__(f"{message_zh} / {message_en}")
        self.message_zh = message_zh
        self.message_en = message_en


class CatalogError(MaskingError):
    """The field catalog file is malformed; names the file and the offending entry."""

    code = "catalog_invalid"

    def __init__(
        self, path: str, entry: str, message_zh: str, message_en: str, *, path_zh: str | None = None
    ) -> None:
        super().__init__(f"{path_zh or path}：{entry}：{message_zh}", f"{path}: {entry}: {message_en}")
        self.path = path
        self.detail_zh, self.detail_en = message_zh, message_en
        self.entry = entry


class RulesError(MaskingError):
    """The masking rules file is malformed; names the file and the offending rule."""

    code = "rules_invalid"

    def __init__(
        self, path: str, entry: str, message_zh: str, message_en: str, *, path_zh: str | None = None
    ) -> None:
        super().__init__(f"{path_zh or path}：{entry}：{message_zh}", f"{path}: {entry}: {message_en}")
        self.path = path
        self.detail_zh, self.detail_en = message_zh, message_en
        self.entry = entry


class UnknownDatasetError(MaskingError):
    """The dataset has no catalog entry, so nothing about it may be served."""

    code = "dataset_not_catalogued"

    def __init__(self, dataset: str, *, known: Sequence[str] = ()) -> None:
        # `known`: the catalogued datasets, named to a steward who mistyped one (not to a data reader).
        if known:
            super().__init__(*unknown_name("数据集", "dataset", dataset, known))
        else:
            super().__init__(
                f"数据集“{dataset}”尚未编目分级，暂不能提供",
                f"dataset {dataset!r} is not in the field catalog and cannot be served",
            )
        self.dataset = dataset


class UnknownProfileError(MaskingError):
    """The policy asked for a masking profile the rule set does not define."""

    code = "masking_profile_unknown"

    def __init__(self, profile: str) -> None:
        super().__init__(
            f"脱敏方案“{profile}”未定义，请联系数据管理员",
            f"masking profile {profile!r} is not defined; ask the data steward",
        )
        self.profile = profile


class OperatorError(MaskingError):
    """An operator is unknown, or its parameters are invalid."""

    code = "operator_invalid"


class KeyRingError(MaskingError):
    """A key ring problem (wrong KEK, unknown key id, retired key used to encrypt). Never shows key bytes."""

    code = "key_ring_error"


class KeyRingMalformed(KeyRingError):
    """The key ring document is not one this release reads (truncated, edited, or a newer format): no KEK
    would open it, so asking for another KEK is the wrong advice."""

    code = "key_ring_malformed"


class UnscopedKeyError(KeyRingError):
    """The key predates dataset binding: the FF1 pseudonyms it made are bound to no dataset."""

    code = "pseudonym_not_bound"

    def __init__(self) -> None:
        # The key id may come from a request: not echoed.
        super().__init__(
            "该身份证号假名是用早于“按数据集绑定”的旧密钥生成的，无法确定它属于哪个数据集（哪个部门），"
            "因此不能还原。请向数据所属部门的数据管理员按原始记录核对；如需可还原的假名，请平台运维人员"
            "先轮换数据密钥（grassroots keys rotate），之后数据接口返回的新假名可由所属部门还原。",
            "This ID-number pseudonym was made with a key older than dataset binding, so which dataset (and "
            "department) it belongs to cannot be told, and it cannot be unmasked. Ask a data steward of the "
            "department that owns the data to check the original record; for reversible pseudonyms, have "
            "the platform operator rotate the data key (grassroots keys rotate): pseudonyms the data API "
            "returns after that can be unmasked by the owning department.",
        )


class UnmaskError(MaskingError):
    """Decryption was refused or failed (tampered envelope, wrong context, missing capability)."""

    code = "unmask_refused"


class DryRunValueError(UnmaskError):
    """The value was made by a dry-run under a throwaway key: it stands for no real value, so there is
    nothing to reverse (and reversing it with a real key would answer a plausible but wrong value)."""

    code = "dry_run_value"

    def __init__(self) -> None:
        super().__init__(
            "这是脱敏试运行（dry-run）用一次性密钥生成的示例值（以 ps:dryrun: 开头），不对应任何真实数据，"
            "不能还原。请对数据接口实际返回的假名或密文申请还原。",
            "This value was made by a masking dry-run with a throwaway key (it starts with ps:dryrun:); it "
            "stands for no real value and cannot be unmasked. Unmask a pseudonym or envelope the data API "
            "returned instead.",
        )


class UnboundEnvelopeError(UnmaskError):
    """A v1 envelope (made before dataset binding) whose context does not say which dataset it is from."""

    code = "envelope_not_bound"

    def __init__(self) -> None:
        super().__init__(
            "这是早于“按数据集绑定”的旧版密文（enc:v1:），其上下文没有指明所属数据集，无法确定属于哪个部门，"
            "因此不能还原。请向数据所属部门的数据管理员按原始记录核对，"
            "或重新查询数据取得新版密文（enc:v3: 或 enc:v2:）后再申请还原。",
            "This is an envelope from before dataset binding (enc:v1:) whose context does not name its "
            "dataset, so which department it belongs to cannot be told, and it cannot be unmasked. Ask a "
            "data steward of the department that owns the data to check the original record, or read the "
            "data again for a current envelope (enc:v3: or enc:v2:) and unmask that.",
        )


class StewardshipError(MaskingError):
    """A proposed catalog, tag or rule change cannot be made (invalid, or not allowed as asked)."""

    code = "masking_change_invalid"


class ProposalNotFoundError(StewardshipError):
    code = "masking_proposal_not_found"

    def __init__(self, proposal_id: str) -> None:
        # The id is not repeated: it comes from a link or a command line and may hold anything, an ID
        # number pasted into the wrong place too (error bodies never carry personal data).
        super().__init__(
            "没有这个变更申请，请核对申请编号（形如 mp-…）。",
            "There is no such masking change proposal; check the proposal id (mp-…).",
        )
        self.proposal_id = proposal_id


class StewardshipForbiddenError(StewardshipError):
    """The person may not propose or decide this change (wrong department, self-approval, base tag)."""

    code = "masking_change_forbidden"


class ProposalConflictError(StewardshipError):
    """The proposal is no longer pending, or what it changes was changed by another approval since."""

    code = "masking_change_conflict"
