"""Tables and figures from the tidy results (pandas only: never Ray internals)."""
