"""The district departments by the code the scenario catalog and admission use, and their Chinese names.

Readers of the 通报, residents and admission reviewers are told the department (区卫健委), not its code
(``health``). The gateway's department names and the admission library's messages (a reviewer recused from
her own department's system) both read this one table; the admission offices' configured names
(``GRASSROOTS_ADMISSION_CONFIG_PATH``) take precedence over it where they name a department.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["DEPARTMENT_NAMES_EN", "DEPARTMENT_NAMES_ZH"]

DEPARTMENT_NAMES_ZH: Final[Mapping[str, str]] = {
    "civil_affairs": "区民政局",
    "public_security": "区公安分局",
    "health": "区卫健委",
}

#: The same departments in English, for the English line of a message that names one.
DEPARTMENT_NAMES_EN: Final[Mapping[str, str]] = {
    "civil_affairs": "District Civil Affairs Bureau",
    "public_security": "District Public Security Sub-bureau",
    "health": "District Health Commission",
}
