"""FHIR R4 as plain Python, shared by every layer: validation of resources and request bodies
(``validation``), OperationOutcome issues (``outcome``), date, dateTime and instant values (``dates``) and
search parameter values (``search``). Imports nothing from Django, the stages or the integrations."""
