"""Vocabulary the libraries must share and cannot pass as plain data: kept tiny, importing none of them.

Only what would otherwise be copied, identically, into several libraries belongs here (a column type, the
division-code parser, the personal-data detector, the departments' Chinese names). It imports nothing of the
product (an import-linter contract checks it), so sharing it adds no arrow between ``policies``,
``masking``, ``audit`` and ``admission``.
"""
