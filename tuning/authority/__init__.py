"""The authority (``policies/``): transaction, lineage, ladder, guards, promotion, authoring, freeze,
certification, hold-out seeds and the witness."""
