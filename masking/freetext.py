"""Free-text PII detection and masking on presidio with Chinese recognizers.

`FreeTextScanner.scan` runs the presidio recognizers of `masking._recognizers` directly: each is asked
only when a cheap trigger for it occurs in the text (a digit, an "@", a plate prefix, a name cue), and
the blank zh pipeline is skipped because it contributes no entities (no NER model, issue 4). The same
recognizers inside a stock presidio `AnalyzerEngine` (`analyzer_engine()`, `scan_with_engine`) give
the same findings at the default threshold; the bench compares the two.

presidio and spaCy are imported on first use, so `import masking` stays fast.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from masking.operators import BindContext, get_operator

__all__ = ["ENTITY_TYPES", "Finding", "FreeTextScanner"]

ENTITY_TYPES: tuple[str, ...] = (
    "CN_ID_NUMBER",
    "BANK_CARD",
    "CN_CREDIT_CODE",
    "CN_MOBILE",
    "CN_LANDLINE",
    "EMAIL_ADDRESS",
    "CN_LICENCE_PLATE",
    "PERSON",
)
# When two findings overlap with equal scores, the earlier type in ENTITY_TYPES wins: an ID number
# can pass the Luhn test by chance and is still an ID number; an all-digit 18-character card number
# passes the GB 32100 check one time in 31 and is still more likely a card.
_PRIORITY = {name: len(ENTITY_TYPES) - i for i, name in enumerate(ENTITY_TYPES)}

_DIGIT = re.compile(r"\d")
_PLATE = re.compile(r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-Z]")
_NAME_CUE = re.compile(
    "户主|姓名|联系人|申请人|村民|居民|本人|家属|配偶|丈夫|妻子|父亲|母亲|儿子|女儿|孙子|孙女|老人|监护人|经办人|"
    "患者|租户|亲属|邻居|低保户|困难户|代理人|负责人|网格员|同志|先生|女士|大爷|大妈|阿姨"
)
_TRIGGERS: dict[str, Callable[[str], bool]] = {
    "CN_ID_NUMBER": lambda t: _DIGIT.search(t) is not None,
    "CN_CREDIT_CODE": lambda t: _DIGIT.search(t) is not None,
    "BANK_CARD": lambda t: _DIGIT.search(t) is not None,
    "CN_MOBILE": lambda t: _DIGIT.search(t) is not None,
    "CN_LANDLINE": lambda t: _DIGIT.search(t) is not None,
    "EMAIL_ADDRESS": lambda t: "@" in t,
    "CN_LICENCE_PLATE": lambda t: _PLATE.search(t) is not None,
    "PERSON": lambda t: _NAME_CUE.search(t) is not None,
}
_LANGUAGE = "zh"


@dataclass(frozen=True, slots=True)
class Finding:
    entity_type: str
    start: int
    end: int
    score: float


def _as_text(fn: Callable[[object], object]) -> Callable[[str], str]:
    return lambda text: str(fn(text))


def _mask_email(text: str) -> str:
    local, _, domain = text.partition("@")
    return f"{local[:1]}***@{domain}"


def _mask_plate(text: str) -> str:
    return text[:2] + "*" * (len(text) - 2)


class FreeTextScanner:
    """Detect and mask Chinese personal data in free text.

    `min_score` drops weak findings (presidio scores; validated identifiers score 1.0).
    `checksum_only_ids=True` also flags 18-digit numbers whose check character is right but whose
    county code python-stdnum does not know (useful on synthetic data); the default agrees with stdnum.
    """

    def __init__(
        self,
        *,
        entities: Iterable[str] | None = None,
        min_score: float = 0.5,
        checksum_only_ids: bool = False,
    ) -> None:
        from masking import _recognizers  # lazy: presidio + spaCy import takes ~1 s

        wanted = set(entities) if entities is not None else set(ENTITY_TYPES)
        unknown = wanted - set(ENTITY_TYPES)
        if unknown:
            raise ValueError(f"unknown entity types: {sorted(unknown)}")
        self.min_score = min_score
        self._recognizers: list[Any] = [
            r
            for r in _recognizers.build_recognizers(checksum_only_ids=checksum_only_ids)
            if r.supported_entities[0] in wanted
        ]
        self._entities = [r.supported_entities[0] for r in self._recognizers]
        self._analyzer: Any = None
        self._analyzer_lock = threading.Lock()
        ctx = BindContext()

        def op(name: str, **params: Any) -> Callable[[object], object]:
            operator = get_operator(name)
            return operator.bind(operator.resolve_params(params), ctx)

        self._maskers: dict[str, Callable[[str], str]] = {}
        for entity, fn in (
            ("CN_ID_NUMBER", op("cn_id", keep_region=6)),
            ("CN_CREDIT_CODE", op("credit_code")),
            ("BANK_CARD", op("bank_card")),
            ("CN_MOBILE", op("mobile")),
            ("CN_LANDLINE", op("landline")),
            ("PERSON", op("name")),
        ):
            self._maskers[entity] = _as_text(fn)
        self._maskers["EMAIL_ADDRESS"] = _mask_email
        self._maskers["CN_LICENCE_PLATE"] = _mask_plate

    @property
    def entities(self) -> tuple[str, ...]:
        return tuple(self._entities)

    def recognizers(self) -> list[Any]:
        """The presidio recognizer objects (to register in another `AnalyzerEngine`)."""
        return list(self._recognizers)

    def scan(self, text: str) -> list[Finding]:
        """Non-overlapping findings, in text order."""
        if not text:
            return []
        raw: list[Finding] = []
        for recognizer, entity in zip(self._recognizers, self._entities, strict=True):
            if not _TRIGGERS[entity](text):
                continue
            for r in recognizer.analyze(text, [entity], None):
                raw.append(Finding(entity, int(r.start), int(r.end), float(r.score)))
        return _resolve(raw, self.min_score)

    def mask(self, text: str) -> str:
        """`text` with every finding replaced by its type's masking operator."""
        return self.scan_and_mask(text)[0]

    def scan_and_mask(self, text: str) -> tuple[str, list[Finding]]:
        """The masked text and the findings it was masked for (one scan)."""
        findings = self.scan(text)
        if not findings:
            return text, findings
        out: list[str] = []
        pos = 0
        for f in findings:
            out.append(text[pos : f.start])
            out.append(self._maskers[f.entity_type](text[f.start : f.end]))
            pos = f.end
        out.append(text[pos:])
        return "".join(out), findings

    def analyzer_engine(self) -> Any:
        """A stock presidio `AnalyzerEngine` on `spacy.blank("zh")` with exactly these recognizers."""
        with self._analyzer_lock:
            if self._analyzer is None:
                from masking import _recognizers

                self._analyzer = _recognizers.build_analyzer(self._recognizers)
            return self._analyzer

    def scan_with_engine(self, text: str) -> list[Finding]:
        """The same scan through presidio's full `AnalyzerEngine.analyze` (NLP pipeline, context
        enhancement, de-duplication); the reference the fast path is measured against."""
        from masking._recognizers import FLAGS

        results = self.analyzer_engine().analyze(
            text=text, language=_LANGUAGE, entities=self._entities, regex_flags=FLAGS
        )
        raw = [Finding(r.entity_type, int(r.start), int(r.end), float(r.score)) for r in results]
        return _resolve(raw, self.min_score)

    def __repr__(self) -> str:
        return f"FreeTextScanner(entities={list(self._entities)}, min_score={self.min_score})"


def _resolve(raw: list[Finding], min_score: float) -> list[Finding]:
    candidates = sorted(
        (f for f in raw if f.score >= min_score),
        key=lambda f: (-f.score, -_PRIORITY.get(f.entity_type, 0), -(f.end - f.start), f.start),
    )
    taken: list[Finding] = []
    for f in candidates:
        if all(f.end <= t.start or f.start >= t.end for t in taken):
            taken.append(f)
    taken.sort(key=lambda f: f.start)
    return taken
