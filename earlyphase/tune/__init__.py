"""The Ray layer: sweep stages as Tune trials, shared checkpoints, the results table. No science here."""
