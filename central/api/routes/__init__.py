"""HTTP routes: parse input, call one use case, return its result."""
