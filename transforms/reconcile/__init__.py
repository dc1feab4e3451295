"""The reconcile stage: links each encounter's patient to the national identity registry."""
