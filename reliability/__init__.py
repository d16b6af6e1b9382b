"""`make reliability`: the long tiers (fuzzing, load) and the one report of figures."""
