"""One module per fuzz target (see ``fuzz.harness.TARGETS``)."""
