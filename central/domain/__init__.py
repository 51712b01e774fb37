"""The pure domain: rules and events, standard library only."""
