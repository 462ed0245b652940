"""The exception tree of the masking library.

Every error carries a Simplified Chinese message first and an English one, because a data steward or a
village user may read it (house style: bilingual, actionable). No error ever contains a field *value*,
a key or other personal data — only names of files, datasets, fields, rules and operators.
"""

from __future__ import annotations


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

    def __init__(self, path: str, entry: str, message_zh: str, message_en: str) -> None:
        super().__init__(f"{path}：{entry}：{message_zh}", f"{path}: {entry}: {message_en}")
        self.path = path
        self.entry = entry


class RulesError(MaskingError):
    """The masking rules file is malformed; names the file and the offending rule."""

    code = "rules_invalid"

    def __init__(self, path: str, entry: str, message_zh: str, message_en: str) -> None:
        super().__init__(f"{path}：{entry}：{message_zh}", f"{path}: {entry}: {message_en}")
        self.path = path
        self.entry = entry


class UnknownDatasetError(MaskingError):
    """The dataset has no catalog entry, so nothing about it may be served."""

    code = "dataset_not_catalogued"

    def __init__(self, dataset: str) -> None:
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
