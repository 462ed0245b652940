"""Admission registry: which departmental systems may reach villages (准入联审).

Registration with a burden-reduction checklist, joint review by configurable offices, separation of
duties, credentials, re-certification and lapse, and the burden / field-overlap views. A library: plain
data in and out; it imports no other product package. Status changes return plain-dict change events
for the gateway to hand to audit.
"""

from admission.burden import (
    DistrictReport,
    DuplicateField,
    FieldOverlap,
    VillageBurden,
    district_report,
    field_overlap,
    village_burden,
)
from admission.config import AdmissionConfig, load_admission_config, parse_admission_config
from admission.credentials import RegisteredPublicKey
from admission.errors import (
    AdmissionError,
    AlreadyVoted,
    ConfigurationError,
    CredentialError,
    IllegalTransition,
    InvalidRegistration,
    RegistrationExists,
    RegistrationNotFound,
    SeparationOfDuties,
    UnknownOffice,
)
from admission.model import (
    BurdenChecklist,
    Concern,
    ProvidedDataset,
    ReviewOffice,
    ReviewRecord,
    ReviewVote,
    SystemRegistration,
    SystemStatus,
    registration_from_mapping,
)
from admission.registry import (
    AdmissionRepository,
    AdmissionService,
    ChangeEvent,
    Clock,
    IssuedClientSecret,
    RecertificationReminder,
    ReviewProgress,
    RoutingVerdict,
    StatusEntry,
    StatusSnapshot,
    load_status_snapshot,
    registry_version,
    routing_verdict,
)
from admission.statemachine import TRANSITIONS, Action, transition
from admission.tables import metadata

__all__ = [
    "TRANSITIONS",
    "Action",
    "AdmissionConfig",
    "AdmissionError",
    "AdmissionRepository",
    "AdmissionService",
    "AlreadyVoted",
    "BurdenChecklist",
    "ChangeEvent",
    "Clock",
    "Concern",
    "ConfigurationError",
    "CredentialError",
    "DistrictReport",
    "DuplicateField",
    "FieldOverlap",
    "IllegalTransition",
    "InvalidRegistration",
    "IssuedClientSecret",
    "ProvidedDataset",
    "RecertificationReminder",
    "RegisteredPublicKey",
    "RegistrationExists",
    "RegistrationNotFound",
    "ReviewOffice",
    "ReviewProgress",
    "ReviewRecord",
    "ReviewVote",
    "RoutingVerdict",
    "SeparationOfDuties",
    "StatusEntry",
    "StatusSnapshot",
    "SystemRegistration",
    "SystemStatus",
    "UnknownOffice",
    "VillageBurden",
    "district_report",
    "field_overlap",
    "load_admission_config",
    "load_status_snapshot",
    "metadata",
    "parse_admission_config",
    "registration_from_mapping",
    "registry_version",
    "routing_verdict",
    "transition",
    "village_burden",
]
