"""The runtime: message context, pipeline stages, SMTP gateway, spool, delivery and the CLI."""
