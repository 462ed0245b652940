"""The admission error tree.

Every error a department admin, a reviewer or (through the gateway) a village user may see carries a stable
``code`` and a message in Simplified Chinese first and English. Messages name systems and offices but never
contain secrets, contact details or personal data.
"""

from __future__ import annotations

from collections.abc import Sequence


class AdmissionError(Exception):
    """Base class: ``code`` is stable and machine-readable; the messages are for people."""

    code: str = "admission_error"

    def __init__(self, message_zh: str, message_en: str, *, code: str | None = None) -> None:
        super().__init__(f"{message_zh} / {message_en}")
        self.message_zh = message_zh
        self.message_en = message_en
        if code is not None:
            self.code = code


class IllegalTransition(AdmissionError):
    """The registration's state machine has no edge for ``(status, action)``."""

    code = "illegal_transition"

    def __init__(
        self,
        status: str,
        action: str,
        *,
        system_id: str | None = None,
        status_zh: str | None = None,
        action_zh: str | None = None,
        possible: Sequence[tuple[str, str]] = (),
        others: Sequence[tuple[str, str, Sequence[tuple[str, str]]]] = (),
        final: bool = False,
        hint: tuple[str, str] | None = None,
    ) -> None:
        who_zh = f"系统 {system_id} " if system_id else ""
        who_en = f"system {system_id} " if system_id else ""
        # What can be done from here instead ((action, its Chinese label) pairs), or that nothing can: said
        # only when the caller knows the status is final (a registration sent back for changes is not).
        next_zh, next_en = "", ""
        if possible:
            next_zh = "当前可以：" + "、".join(f"{zh}（{a}）" for a, zh in possible) + "。"
            next_en = " Possible now: " + ", ".join(a for a, _ in possible) + "."
        elif final:
            next_zh, next_en = "该状态为最终状态，不能再变更。", " This status is final."
        elif others:
            # Nothing the asker's party can do: who can, and what ((party zh, party en, actions) triples).
            next_zh = (
                "现在不能由您办理，可以办理的是："
                + "；".join(f"{pz}——" + "、".join(f"{zh}（{a}）" for a, zh in acts) for pz, _, acts in others)
                + "。"
            )
            next_en = (
                " Only others can act now: "
                + "; ".join(f"{pe} may {', '.join(a for a, _ in acts)}" for _, pe, acts in others)
                + "."
            )
        elif hint is not None:
            # What the caller (who may hold none of the possible actions) can do instead.
            next_zh, next_en = hint[0], f" {hint[1]}"
        super().__init__(
            f"{who_zh}当前状态为「{status_zh or status}」，不能执行「{action_zh or action}」操作。{next_zh}",
            f"Cannot {action} {who_en}while it is {status}.{next_en}",
        )
        self.status = status
        self.action = action
        self.system_id = system_id


class RegistrationNotFound(AdmissionError):
    code = "system_not_found"

    def __init__(self, system_id: str) -> None:
        super().__init__(
            f"准入登记册中没有系统 {system_id}。",
            f"No system {system_id} in the admission registry.",
        )
        self.system_id = system_id


class RegistrationExists(AdmissionError):
    code = "system_exists"

    def __init__(self, system_id: str) -> None:
        super().__init__(
            f"系统 {system_id} 已登记，请修改原登记而不是重复登记。",
            f"System {system_id} is already registered; update it instead of registering again.",
        )
        self.system_id = system_id


class InvalidRegistration(AdmissionError):
    """A registration field is missing or malformed; ``field`` names it."""

    code = "invalid_registration"

    def __init__(self, field: str, message_zh: str, message_en: str) -> None:
        super().__init__(f"{field}：{message_zh}", f"{field}: {message_en}")
        self.field = field


class MissingRegistrationFields(InvalidRegistration):
    """Required items left out of a registration, all named at once (``fields``; ``field`` is the first):
    a department filling in the form learns everything it still owes in one answer, not one per attempt.
    ``items`` pairs each key with its Chinese name and, where it helps, what to write."""

    def __init__(self, items: Sequence[tuple[str, str, str]]) -> None:
        named_zh = "、".join(f"{zh}（{key}{hint}）" for key, zh, hint in items)
        keys = [key for key, _, _ in items]
        AdmissionError.__init__(
            self,
            f"登记内容缺少 {len(items)} 项必填内容：{named_zh}。请一并补齐后再登记。",
            f"The registration lacks {len(items)} required item(s): {', '.join(keys)}. Fill them all in.",
        )
        self.field = keys[0]
        self.fields = tuple(keys)


class ReasonRequired(InvalidRegistration):
    """A decision that must say why (a vote against or for changes, a suspension, a revocation) came
    without a reason or comment; ``field`` names the missing one."""

    code = "reason_required"


class AdmissionConflict(AdmissionError):
    """The request conflicts with the system's present state (a round already open, a secret already
    issued); it may succeed once the state has changed. HTTP 409 at the API."""

    code = "admission_conflict"


class SeparationOfDuties(AdmissionError):
    """A reviewer may not judge their own department's system, nor sit for two offices in one round."""

    code = "separation_of_duties"


class UnknownOffice(AdmissionError):
    code = "unknown_office"

    def __init__(self, office: str) -> None:
        super().__init__(
            f"「{office}」不是已配置的联审单位。",
            f"{office!r} is not a configured reviewing office.",
        )
        self.office = office


class AlreadyVoted(AdmissionError):
    code = "already_voted"


class CredentialError(AdmissionError):
    """Credentials cannot be issued, rotated or registered (a malformed key, or the system's state)."""

    code = "credential_error"


class CredentialConflict(CredentialError, AdmissionConflict):
    """Credentials cannot be issued, rotated or stored in the system's present state (HTTP 409)."""

    code = "credential_error"


class ConfigurationError(AdmissionError):
    code = "admission_configuration"
