"""Reads for the clinician review UI, shaped for the templates.

Modules: ``access`` (who may see and decide where; one suggestion if the user may see it), ``queue`` (a page
of the queue and its filters), ``suggestion`` (one suggestion with its proposal and its model's card),
``basis`` (a risk or problem finding's evidence as the page shows it), ``decision`` (a signed decision and
its signature check), ``vocabulary`` (the concepts a clinician may choose), ``evidence`` (reading what a
model wrote without trusting its shape).

The sealed payloads are opened here, for the rows shown only. Evidence is whatever a model wrote: every
reader takes what it finds and leaves out what is missing or of the wrong shape, never raising.
"""
