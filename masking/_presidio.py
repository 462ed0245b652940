"""The recognizers of `masking.recognizers` as presidio objects, and a stock `AnalyzerEngine` over them.

Only the reference path imports this (`FreeTextScanner.analyzer_engine`, `scan_with_engine`,
`recognizers`): presidio and spaCy take about a second of CPU to import, which the gateway, serving
through the fast scanner, never pays.
"""

from __future__ import annotations

from typing import Any

import spacy
from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
from presidio_analyzer.nlp_engine import SpacyNlpEngine

from masking.recognizers import FLAGS, LANGUAGE, Recognizer


class _Wrapped(PatternRecognizer):
    """A presidio `PatternRecognizer` with one recognizer's patterns, context words and verdict."""

    def __init__(self, recognizer: Recognizer) -> None:
        self.recognizer = recognizer
        super().__init__(
            supported_entity=recognizer.ENTITY,
            name=recognizer.name,
            supported_language=LANGUAGE,
            patterns=[Pattern(p.name, p.regex, p.score) for p in recognizer.PATTERNS],
            context=list(recognizer.CONTEXT),
            global_regex_flags=FLAGS,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        return self.recognizer.validate_result(pattern_text)


def presidio_recognizer(recognizer: Recognizer) -> PatternRecognizer:
    return _Wrapped(recognizer)


class BlankChineseNlpEngine(SpacyNlpEngine):
    """presidio's spaCy engine around `spacy.blank("zh")`: character segmentation, no model download,
    no NER (all detection is done by the recognizers)."""

    def __init__(self) -> None:
        super().__init__(models=[{"lang_code": LANGUAGE, "model_name": "blank:zh"}])

    def load(self) -> None:
        # presidio declares `nlp` as None until loaded; this is its loaded shape.
        self.nlp = {LANGUAGE: spacy.blank(LANGUAGE)}  # type: ignore[assignment]


def build_analyzer(recognizers: list[PatternRecognizer]) -> Any:
    """A stock presidio `AnalyzerEngine` over the blank Chinese pipeline with exactly these recognizers."""
    engine = BlankChineseNlpEngine()
    engine.load()
    registry = RecognizerRegistry(
        recognizers=list(recognizers), supported_languages=[LANGUAGE], global_regex_flags=FLAGS
    )
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=[LANGUAGE])
