"""Supervision settings and the periodic jobs: the signed checkpoint, the archiving of closed months and
the escalation of overdue cases.

The checkpoint task signs the Merkle root of the whole audit log every
``GRASSROOTS_CHECKPOINT_INTERVAL_S`` seconds (default 300) into the external checkpoint directory — the
RFC 6962 §3.5 "signed tree head" cadence that bounds how much history a database administrator could
rewrite unnoticed. It skips a round when nothing was appended since the last checkpoint, and it does
not write an audit event per round (that would make the log grow forever just to say it was signed);
checkpoints asked for by a person (``POST /api/v1/supervision/checkpoints``) are audited.

The archive task writes the signed archive (:func:`audit.archive_month`) of every closed month that has
no complete archive yet, every ``GRASSROOTS_AUDIT_ARCHIVE_INTERVAL_S`` seconds (default 3600): retention
(PIPL Art. 56, GB/T 35273-2020 §6.1) means old months kept as signed, verifiable files, not a command
somebody has to remember. A month is closed once it has ended in Beijing time (the platform's months,
:func:`audit.query.month_bounds`) and :data:`ARCHIVE_SETTLE` has passed. Each archive is recorded like
one asked for through ``POST /api/v1/supervision/archives`` (``grassroots audit archive``): the index row
and a ``supervision.month_archived`` event, in one transaction, actor ``system`` with ``scheduled: true``.
Several gateway processes may run it at once: one archiver at a time holds :func:`archiving_lock` (a
PostgreSQL advisory lock, or a file lock beside the archives on SQLite, whose processes share one host),
and re-reads the archive index under it, so a month archived by another process is never archived again.

The escalation task (督办) escalates every overdue incident not yet escalated to the office one level above
the one holding it, and one whose office above let its own period (``GRASSROOTS_ESCALATION_DUE_DAYS``,
default 15) run out one level further, up to the national level, every
``GRASSROOTS_ESCALATION_INTERVAL_S`` seconds (default 600): :func:`escalate_overdue`, each case in a
transaction of its own with its audit event; several processes may run it at once (one conditional UPDATE
claims a case, so it is escalated and recorded once per level).

Settings live here rather than in ``gateway.settings`` so the supervision area stays self-contained;
they read the same ``GRASSROOTS_`` environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

import audit
from audit import (
    ArchiveError,
    ArchiveResult,
    AuditLog,
    ChainBusy,
    CheckpointError,
    CheckpointSigner,
    DayCount,
    Deadlines,
    KeyRetired,
    WorkCalendar,
    archive_month,
    extend_checkpoint_if_grown,
    latest_checkpoint,
    record_archive,
    work_calendar,
)
from audit.archive import month_has_ended, month_seq_range
from audit.checkpoints import holds_checkpoints
from audit.merkle import MerkleAccumulator
from audit.query import beijing_month, stored_utc
from audit.tables import ArchiveRow, audit_events
from gateway.changes import change_event
from gateway.checkpoint_health import KEY_UNAVAILABLE, failure_kind
from gateway.settings import refuse_blank_path
from policies.divisions import normalize

if TYPE_CHECKING:
    from gateway.runtime import Runtime

_log = logging.getLogger("gateway.supervision")


class SupervisionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRASSROOTS_", extra="ignore")

    # At least 0 and finite: a negative or NaN interval would switch the signed checkpoints (or the archiving)
    # off as quietly as 0 does, and inf would never run them; only 0, written as such, turns them off.
    checkpoint_interval_s: float = Field(
        300.0, ge=0, allow_inf_nan=False, description="seconds between periodic signed checkpoints; 0: off"
    )
    audit_archive_interval_s: float = Field(
        3600.0,
        ge=0,
        allow_inf_nan=False,
        description="seconds between rounds of archiving every closed month not yet completely archived; "
        "0 switches it off",
    )
    audit_retention_years: int = Field(3, ge=1, description="keep processing records (PIPL Art. 56)")
    audit_archive_dir: Path | None = Field(None, description="where monthly archives are written")
    anomaly_rules_path: Path | None = Field(None, description="anomaly rules TOML (default: packaged)")
    complaint_due_days: int = Field(15, ge=1, description="days to answer a complaint")
    incident_due_days: int = Field(30, ge=1, description="days to close an incident")
    deadline_days: DayCount = Field(
        DayCount.CALENDAR,
        description="how the periods (complaint, incident, escalation) are counted: calendar_days (自然日; "
        "a last day that is a weekend day off or a statutory holiday moves to the next working day, Civil "
        "Code Art. 203) or working_days (工作日; holidays skipped, the State Council's adjusted working days "
        "counted)",
    )
    holidays_file: Path | None = Field(
        None,
        description="TOML with the State Council's holiday schedule for years the installed chinesecalendar "
        "does not know yet ([2027] holidays = [...], workdays = [...]); a year here replaces the package's",
    )
    escalation_interval_s: float = Field(
        600.0,
        ge=0,
        allow_inf_nan=False,
        description="seconds between rounds escalating (督办) overdue incidents to the office above; 0: off",
    )
    escalation_due_days: int = Field(
        15,
        ge=1,
        description="days the office an overdue incident is escalated to has to see it closed before it is "
        "escalated one level further up (counted as the other periods are, GRASSROOTS_DEADLINE_DAYS)",
    )
    division_names_file: Path | None = Field(
        None,
        description="division names for reports and transparency answers: 'code,name' lines (UTF-8); "
        "default: the demo world's in development, none otherwise",
    )
    platform_org: str | None = Field(
        None,
        description="division code of the jurisdiction this platform serves (e.g. 310151000000, a "
        "district's): supervisors whose scope covers it also see the events no organisation is charged "
        "with (a token no organisation can be read from, key rotations, departmental systems' own calls); "
        "default: the demo world's district in development, none otherwise (then only a nationwide scope)",
    )

    _paths_not_blank = field_validator(
        "audit_archive_dir", "anomaly_rules_path", "holidays_file", "division_names_file", mode="before"
    )(refuse_blank_path)

    @field_validator("platform_org")
    @classmethod
    def _division_code(cls, value: str | None) -> str | None:
        from gateway.settings import InvalidSetting

        if value is None or not value.strip():
            return None
        try:
            return normalize(value.strip())
        except ValueError:
            raise InvalidSetting(
                "须为 2、4、6、9 或 12 位的统计用区划代码（例如 310151000000）",
                "must be a division code of 2, 4, 6, 9 or 12 digits (for example 310151000000)",
            ) from None


@functools.lru_cache(maxsize=4)
def _calendar(path: Path | None, changed: float) -> WorkCalendar:
    # Keyed on the file's modification time: an operator's update is read on the next deadline counted.
    return work_calendar(path)


def deadlines_of(settings: SupervisionSettings) -> Deadlines:
    """The configured periods, counted on the holiday schedule (the package's, the operator's file over
    it). Raises :class:`audit.HolidayFileError` for a file that cannot be read (fail closed)."""
    path = settings.holidays_file
    try:
        changed = path.stat().st_mtime if path is not None else 0.0
    except OSError:
        changed = -1.0  # read (and refused) by work_calendar, which says why
    return Deadlines(
        complaint_days=settings.complaint_due_days,
        incident_days=settings.incident_due_days,
        unit=settings.deadline_days,
        calendar=_calendar(path, changed),
        escalation_days=settings.escalation_due_days,
    )


def signer_for(runtime: Runtime) -> CheckpointSigner:
    return CheckpointSigner.load_or_create(runtime.settings.effective_checkpoint_key_path)


def checkpoint_round(
    runtime: Runtime, signer: CheckpointSigner | None, since: MerkleAccumulator | None
) -> tuple[CheckpointSigner | None, MerkleAccumulator | None]:
    """One periodic round, its outcome told to ``runtime.checkpoint_health``: load the key if it is not
    loaded yet (a key unreadable at start is retried each round, not the end of the task), then sign if
    the log grew. Returns the signer and the accumulator for the next round."""
    health = runtime.checkpoint_health
    if signer is None:
        try:
            signer = signer_for(runtime)
        except Exception as exc:  # never the message: it names the key file
            health.failed(datetime.now(UTC), KEY_UNAVAILABLE)
            _log.error("periodic audit checkpoint failed: its key cannot be loaded (%s)", type(exc).__name__)
            return None, None
    directory = runtime.settings.effective_checkpoint_dir
    try:
        first = not holds_checkpoints(directory)
        written = extend_checkpoint_if_grown(runtime.engine, signer, directory, since)
        if written is not None:
            checkpoint, since = written
            if first:
                _record_first_checkpoint(runtime.engine, checkpoint)
            signed_at: datetime | None = checkpoint.timestamp
            _log.info(
                "periodic audit checkpoint written: %d events",
                checkpoint.tree_size,
                extra={"tree_size": checkpoint.tree_size},
            )
        else:  # the latest checkpoint already covers the log (and was verified on the way)
            signed_at = health.latest_signed_at()
            if signed_at is None:  # the first round of this process: read when it was signed
                latest = latest_checkpoint(directory, signer.public_key)
                signed_at = None if latest is None else latest.timestamp
    except ChainBusy as exc:  # a rotation or a restore acceptance under way: nothing signed, try next round
        health.failed(datetime.now(UTC), failure_kind(exc))
        _log.warning("periodic audit checkpoint not written: %s", exc)
        return signer, since
    except KeyRetired as exc:
        # Handed over meanwhile: the next round loads the key file again (a rotation on this host has
        # put the new key there; on another host, the operator copies it here).
        health.failed(datetime.now(UTC), failure_kind(exc))
        _log.error("periodic audit checkpoint refused: %s", exc)
        return None, None
    except CheckpointError as exc:
        # Refusing to sign is the alarm: the log no longer extends the last signed checkpoint.
        health.failed(datetime.now(UTC), failure_kind(exc))
        _log.error("periodic audit checkpoint refused: %s", exc)
        return signer, None  # the next attempt walks the whole log again
    except Exception as exc:
        health.failed(datetime.now(UTC), failure_kind(exc))
        _log.error("periodic audit checkpoint failed: %s", type(exc).__name__)
        return signer, since
    health.succeeded(datetime.now(UTC), signed_at)
    return signer, since


def _record_first_checkpoint(engine: Engine, checkpoint: audit.Checkpoint) -> None:
    """A chain's first checkpoint, signed by the periodic round, recorded as ``audit.checkpoint_written``
    (``scheduled``), as an on-demand one is. Later periodic ones are not (one event a round would grow the
    log forever). Before, a log whose checkpoints were all periodic (the usual deployment) recorded no
    signing at all, so a mistyped or unmounted GRASSROOTS_CHECKPOINT_DIR looked like a fresh install:
    ``serve`` started a second chain there and ``keys rotate-checkpoint`` handed the key over into it.
    With the event on record, those refuse (``_refuse_a_lost_checkpoint_directory``). Not recorded when
    the log cannot take it (logged): the checkpoint stands, and signing goes on."""
    change = {"kind": "audit.checkpoint_written", "actor": ARCHIVER, **checkpoint.event_details()}
    try:
        AuditLog(engine).append(change_event({**change, "scheduled": True}))
    except audit.AuditUnavailable:
        _log.error("the first periodic audit checkpoint was written but the audit log could not record it")


async def checkpoint_loop(runtime: Runtime, interval_s: float) -> None:
    """Every ``interval_s``, a signed checkpoint if the log grew. The first one walks the whole log (and
    checks the latest checkpoint against it); later ones read only the events since the last one."""
    signer: CheckpointSigner | None = None
    since: MerkleAccumulator | None = None
    # The key is loaded (on a new installation, made) at start, as the first round would a whole interval
    # later: meanwhile every monthly report said the key was missing and asked the operator to restore
    # it. One that cannot be loaded now is tried again by each round, which says why.
    with contextlib.suppress(Exception):
        signer = await asyncio.to_thread(signer_for, runtime)
    while True:
        await asyncio.sleep(interval_s)
        signer, since = await asyncio.to_thread(checkpoint_round, runtime, signer, since)


# -- archiving closed months -------------------------------------------------------------------------

#: Who the periodic archive is recorded as (the actor of the gateway's own acts, as for policy reloads).
ARCHIVER: Final = "system"
#: How long after a month has ended it is archived: events are timestamped a moment before they are
#: appended, so the last events of a month may still be on their way into the log as it ends.
ARCHIVE_SETTLE: Final = timedelta(minutes=10)
#: The first round runs this soon after start (not a whole interval later: restarts must not postpone it).
FIRST_ARCHIVE_DELAY_S: Final = 60.0
# One key for every archiver of the database (PostgreSQL advisory locks are per database).
_ARCHIVE_LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(b"grassroots-audit-archive").digest()[:8], "big", signed=True
)
_LOCK_SUFFIX: Final = ".archiving.lock"


def _lock_file(engine: Engine, directory: Path) -> Path:
    """Beside the SQLite database file (what all its processes share, whatever their archive directory);
    an in-memory database has one process: the archive directory will do."""
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database)
        return path.with_name(path.name + _LOCK_SUFFIX)
    directory.mkdir(parents=True, exist_ok=True)
    return directory / _LOCK_SUFFIX


def archive_dir(runtime: Runtime) -> Path:
    """Where monthly archives are written: ``GRASSROOTS_AUDIT_ARCHIVE_DIR``, else ``<data dir>/archives``."""
    return SupervisionSettings().audit_archive_dir or runtime.settings.data_dir / "archives"


@contextlib.contextmanager
def archiving_lock(engine: Engine, directory: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the right to archive, across every gateway process of the database; yields whether it is
    held (with ``wait`` always, after waiting for the holder; without, False at once when it is taken).

    PostgreSQL: a transaction-level advisory lock on a connection of its own, released when that
    transaction ends, which is after the holder committed its archive rows (the next holder sees them).
    SQLite: the database is a file on one host, so every process using it can open a file beside it: an
    exclusive ``flock`` on ``<database>.archiving.lock`` (released by the kernel if the process dies).
    Only archivers take it: reads and appends never wait for an archive."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            if wait:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ARCHIVE_LOCK_KEY})
                held = True
            else:
                held = bool(
                    conn.execute(
                        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _ARCHIVE_LOCK_KEY}
                    ).scalar_one()
                )
            try:
                yield held
            finally:
                conn.rollback()  # ends the transaction, and with it the lock
        return
    with open(_lock_file(engine, directory), "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            held = False
        else:
            held = True
        try:
            yield held
        finally:
            if held:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _next_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year + (mon == 12):04d}-{mon % 12 + 1:02d}"


def months_to_archive(engine: Engine, now: datetime, settle: timedelta = ARCHIVE_SETTLE) -> list[str]:
    """Closed months (ended, Beijing time, at least ``settle`` before ``now``) holding events and having
    no complete archive (one made after the month ended), oldest first. Months already pruned from the
    database hold no events any more; they were archived completely before they could be pruned."""
    with engine.connect() as conn:
        oldest = conn.execute(select(func.min(audit_events.c.occurred_at))).scalar_one()
        archived = conn.execute(select(ArchiveRow.month, ArchiveRow.created_at)).all()
    if oldest is None:
        return []
    complete = {str(m) for m, created in archived if month_has_ended(str(m), stored_utc(created))}
    # The month (now - settle) falls in has not ended long enough ago; every month before it has.
    current = beijing_month(now - settle)
    months = []
    month = beijing_month(stored_utc(oldest))
    while month < current:
        if month not in complete and month_seq_range(engine, month) is not None:
            months.append(month)
        month = _next_month(month)
    return months


def _record(engine: Engine, result: ArchiveResult, now: datetime) -> None:
    """The archive's index row and its ``supervision.month_archived`` event, committed together (as the
    gateway's unit of work does for ``POST /archives``): an archive nobody can account for never counts."""
    with Session(engine) as session:
        if engine.dialect.name == "sqlite":
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")  # never upgrade a read lock
        change = record_archive(session, result, ARCHIVER, now)
        event = dataclasses.replace(change_event({**change, "scheduled": True}), occurred_at=now)
        AuditLog(engine).append_within(session.connection(), [event])
        session.commit()


def archive_closed_months(
    engine: Engine,
    signer: CheckpointSigner,
    directory: Path,
    now: datetime,
    *,
    settle: timedelta = ARCHIVE_SETTLE,
    checkpoint_dir: Path | None = None,
) -> list[ArchiveResult] | None:
    """One round: archive every closed month without a complete archive (:func:`months_to_archive`),
    oldest first, each recorded as :func:`_record` does. Returns the archives written, or None when
    another process holds :func:`archiving_lock` (it is archiving; the next round looks again).

    The months are read under the lock, so a month another process archived is seen as archived. What an
    interrupted round (a killed process) left is cleared first (:func:`audit.archive_month`): temporary
    files removed, an unsigned events file set aside, a complete signed archive that verifies adopted. A
    month that cannot be archived (:class:`audit.ArchiveError`, e.g. a signed manifest in the way that
    does not verify, never overwritten, or a key ``checkpoint_dir``'s handovers have retired) is logged and
    skipped; the others are still archived."""
    written: list[ArchiveResult] = []
    with archiving_lock(engine, directory, wait=False) as held:
        if not held:
            return None
        for month in months_to_archive(engine, now, settle):
            try:
                result = archive_month(
                    engine, signer, directory, month, now=now, checkpoint_dir=checkpoint_dir
                )
            except ArchiveError as exc:
                _log.error("closed month %s not archived: %s", month, exc.message_en)
                continue
            _record(engine, result, now)
            written.append(result)
    return written


async def archive_loop(runtime: Runtime, interval_s: float) -> None:
    """Every ``interval_s`` (the first round soon after start), archive the closed months not yet archived."""
    directory = archive_dir(runtime)
    await asyncio.sleep(min(interval_s, FIRST_ARCHIVE_DELAY_S))
    while True:
        try:
            # Read each round: a key rotated on this host is used from the next round on (the retired key
            # archives nothing), and a key file unreadable for a while is not the end of the task.
            signer = await asyncio.to_thread(signer_for, runtime)
            written = await asyncio.to_thread(
                archive_closed_months,
                runtime.engine,
                signer,
                directory,
                datetime.now(UTC),
                checkpoint_dir=runtime.settings.effective_checkpoint_dir,
            )
            for result in written or ():
                _log.info(
                    "closed month archived",
                    extra={"month": result.month, "first_seq": result.first_seq, "last_seq": result.last_seq},
                )
        except Exception as exc:
            _log.error("periodic month archiving failed: %s", type(exc).__name__)
        await asyncio.sleep(interval_s)


# -- escalating overdue incidents (督办) ----------------------------------------------------------------


def escalate_overdue(
    engine: Engine, now: datetime, deadlines: Deadlines | None = None
) -> list[dict[str, Any]]:
    """One round: every overdue incident not yet escalated goes to the office above the one holding it,
    and every one whose office above let its period (``deadlines``' escalation days) run out with the case
    still open and overdue goes one level further up (:func:`audit.escalate_incident`), each in a
    transaction of its own with its ``supervision.incident_escalated`` event (actor ``system``,
    ``scheduled: true``), committed together. Several gateway processes may run it at once: each case is
    claimed by one conditional UPDATE, so it is escalated, stepped and audited once per level (the others'
    claims change nothing and record nothing). Returns the changes this process made."""
    days = deadlines if deadlines is not None else Deadlines()
    with Session(engine) as session:
        candidates = audit.incidents_to_escalate(session, now)
    made = []
    for incident_id in candidates:
        with Session(engine) as session:
            if engine.dialect.name == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")  # never upgrade a read lock
            done = audit.escalate_incident(
                session, incident_id=incident_id, now=now, actor=ARCHIVER, deadlines=days
            )
            if done is None:
                session.rollback()
                continue
            _, change = done
            event = dataclasses.replace(change_event({**change, "scheduled": True}), occurred_at=now)
            AuditLog(engine).append_within(session.connection(), [event])
            session.commit()
            made.append(change)
    return made


def escalation_round(engine: Engine, now: datetime, settings: SupervisionSettings) -> list[dict[str, Any]]:
    """One periodic round on the configured periods, read afresh (an operator's new holiday file counts
    from the next round). A holiday file that cannot be read escalates nothing this round (logged, as
    registering a complaint is refused then): a period counted without it could be wrong either way."""
    try:
        deadlines = deadlines_of(settings)
    except audit.HolidayFileError as exc:
        _log.error("overdue incidents not escalated this round: holidays file unreadable: %s", exc.message_en)
        return []
    return escalate_overdue(engine, now, deadlines)


async def escalation_loop(runtime: Runtime, interval_s: float) -> None:
    """Every ``interval_s`` (the first round soon after start), escalate the overdue incidents."""
    await asyncio.sleep(min(interval_s, FIRST_ARCHIVE_DELAY_S))
    while True:
        try:
            made = await asyncio.to_thread(
                escalation_round, runtime.engine, datetime.now(UTC), SupervisionSettings()
            )
            for change in made:
                _log.info(
                    "overdue incident escalated",
                    extra={
                        "incident_id": change["incident_id"],
                        "org": change["org"],
                        "escalation_level": change["escalation_level"],
                    },
                )
        except Exception as exc:
            _log.error("periodic escalation of overdue incidents failed: %s", type(exc).__name__)
        await asyncio.sleep(interval_s)


def _warn_unknown_years(settings: SupervisionSettings, now: datetime) -> None:
    """Said once at start: deadlines reaching past the schedule's last year are estimates (the case says
    so too, ``due_estimated``)."""
    try:
        calendar = deadlines_of(settings).calendar
    except audit.HolidayFileError as exc:
        _log.error("holidays file unreadable: %s; complaints cannot be registered", exc.message_en)
        return
    last = calendar.last_known_day()
    horizon = (now + timedelta(days=2 * max(settings.complaint_due_days, settings.incident_due_days))).date()
    if last is None or last < horizon:
        _log.warning(
            "the holiday schedule ends %s: deadlines after it are conservative estimates "
            "(update chinesecalendar or GRASSROOTS_HOLIDAYS_FILE)",
            last,
        )


def start_supervision_tasks(runtime: Runtime) -> list[asyncio.Task[None]]:
    settings = SupervisionSettings()
    _warn_unknown_years(settings, datetime.now(UTC))
    tasks = []
    if settings.checkpoint_interval_s > 0:
        tasks.append(
            asyncio.create_task(
                checkpoint_loop(runtime, settings.checkpoint_interval_s), name="audit-checkpoints"
            )
        )
    if settings.audit_archive_interval_s > 0:
        tasks.append(
            asyncio.create_task(
                archive_loop(runtime, settings.audit_archive_interval_s), name="audit-archives"
            )
        )
    if settings.escalation_interval_s > 0:
        tasks.append(
            asyncio.create_task(
                escalation_loop(runtime, settings.escalation_interval_s), name="incident-escalation"
            )
        )
    return tasks


async def stop_supervision_tasks(tasks: list[asyncio.Task[None]] | None) -> None:
    for task in tasks or ():
        task.cancel()
    for task in tasks or ():
        with contextlib.suppress(asyncio.CancelledError):
            await task
