"""Use cases: each opens one unit of work, changes rows, records events, commits once."""
