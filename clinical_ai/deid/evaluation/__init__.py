"""Measuring de-identification: span precision, recall and F2 against labelled text, and identifier leaks
on whole FHIR bundles, for our scrubber and for bare Presidio with the same spaCy model, in one run.

Pure Python (no Django): the FHIR pipeline is passed in as a callable. Modules:

- :mod:`labels` maps every dataset's and detector's entity types onto a few evaluation labels;
- :mod:`metrics` scores predicted spans against gold spans;
- :mod:`notes` generates the labelled clinical note set from ``fixtures/deid_eval/templates.json``, with
  fictional values from :mod:`note_values`;
- :mod:`datasets` loads presidio-research's sentences and the generated notes;
- :mod:`detectors` runs our scrubber and bare Presidio over texts (these import Presidio: seconds);
- :mod:`leaks` counts a Synthea patient's known identifiers left in de-identified output;
- :mod:`runner` runs the three evaluations and :mod:`report` prints them.
"""
