"""gateway.toml: the frozen configuration and its schema."""
