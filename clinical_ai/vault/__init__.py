"""The pseudonym vault, web side: who a pseudonym is, for an authorized clinician, audited.

The de-identification stage (``clinical_ai.deid``, workers) writes the vault, sealing each original to the
vault's public key (``crypto``); it cannot read what it wrote. This package is what the web process needs
to read it: the keyed pseudonyms (``pseudonyms``, pure), the blind index of the EHR's patient references and
re-identification (``services``). Nothing here imports the de-identification engines (Presidio, spaCy).
"""
