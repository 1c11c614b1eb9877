"""The mail server: listener, spool, queue runner, SMTP client, DSN, quarantine, supervisor."""
