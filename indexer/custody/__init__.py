"""Custody: what backs the supply, beside the chain pipeline.

Payload bytes (:mod:`.source`: a file, stdin, the issuer API) -> validated records (:mod:`.parse`
with :mod:`.fields` and :mod:`.json_shapes`) -> COPY text (:mod:`.copy_text`) -> the database
(:mod:`.importer`, ``indexer custody import|pull``). The backing rules then open and close flags
(:mod:`.reconcile`, run by ``indexer reconcile`` and by the daemon after each committed round;
:mod:`.flags` lists and acknowledges them).
"""
