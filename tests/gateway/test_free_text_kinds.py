"""Typed text (grant reasons, complaint summaries, notes) is refused when it holds personal data the
response scan masks: the refusal names the kind and never repeats the value."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRequest
from gateway.free_text import personal_data_kind, refuse_personal_data

TYPED = [
    ("回电一三八一二三四五六七八", "mobile"),
    ("加微信号：wang_jg88再联系", "wechat_id"),
    ("护照号：E12345678已核", "passport"),
    ("二〇二四年三月走访三组五户", None),
    ("微信群已通知，护照业务另办", None),
    ("vx：wang_jg88", "wechat_id"),
    ("回电138一二三四5678", "mobile"),
    ("投诉人家住幸福路88弄12号", "address"),
    ("3组12号门前路灯损坏，已报修", None),
    # a name before what the person said (称) is a name; 王某 and words after a cue that begin with a
    # surname character (陆续、强烈) name nobody, here as in the response scan
    ("村民郭春刚称已搬走", "person"),
    ("户主王某，其子李某称", None),
    ("村民陆续领取，居民强烈要求", None),
]


@pytest.mark.parametrize(("text", "kind"), TYPED)
def test_kind_of_personal_data_in_typed_text(text: str, kind: str | None) -> None:
    assert personal_data_kind(text) == kind


@pytest.mark.parametrize(
    ("text", "value"), [("微信号：wang_jg88", "wang_jg88"), ("护照E12345678", "E12345678")]
)
def test_refusal_names_the_kind_and_not_the_value(text: str, value: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        refuse_personal_data(text, "事由", "reason", code="personal_data_in_reason")
    assert value not in str(refused.value.__dict__)
