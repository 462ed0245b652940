"""No plain personal data anywhere in the audit tables (PIPL Art. 51; residents only as keyed refs)."""

from __future__ import annotations

from faker import Faker

from audit import AuditLog, Outcome, metadata
from tests.audit.conftest import Store
from tests.audit.helpers import PSEUDONYMIZER, make_event


def test_scan_finds_no_id_numbers_or_mobiles(store: Store) -> None:
    fake = Faker("zh_CN")
    fake.seed_instance(20240501)
    residents = [(fake.ssn(), fake.phone_number(), fake.name()) for _ in range(25)]
    assert all(len(i) == 18 and len(m) == 11 for i, m, _ in residents)
    log = AuditLog(store.engine)
    log.append_many(
        make_event(
            n,
            outcome=Outcome.ALLOWED,
            subject_refs=(PSEUDONYMIZER.ref(id_number), PSEUDONYMIZER.ref(mobile)),
            record_refs=(PSEUDONYMIZER.ref(f"residents/{id_number}"),),
            details={
                "name_ref": PSEUDONYMIZER.ref(name),
                "masked": id_number[:3] + "*" * 11 + id_number[-4:],
            },
        )
        for n, (id_number, mobile, name) in enumerate(residents)
    )

    dump: list[str] = []
    with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(table.select()):
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        dump.append(bytes(value).decode("latin-1"))
                    dump.append(str(value))
    haystack = "\n".join(dump)
    assert PSEUDONYMIZER.ref(residents[0][0]) in haystack  # the scan does see the refs it should
    for id_number, mobile, name in residents:
        assert id_number not in haystack
        assert mobile not in haystack
        assert name not in haystack
