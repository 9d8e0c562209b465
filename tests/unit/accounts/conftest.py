from tests.unit.audit.personas import (  # noqa: F401  (fixtures)
    _console_urls,
    admin,
    auditor,
    clinician,
    other_site_clinician,
    superuser,
)
