"""The filter language: grammar, AST, checks, diagnostics, formatter and compiler."""
