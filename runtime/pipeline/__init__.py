"""The stages in AsyncOS order, the mail policies, and the trace and suite views of them."""
