"""The language server behind `filterlang lsp`: the front end's diagnostics, signature table and
formatter, served to any editor that speaks the Language Server Protocol.

Modules: ``server`` wires the protocol (pygls) to the features; ``text`` converts between the
parser's positions and the client's; ``cursor`` reads what is under the cursor in text that may
not parse; ``signatures`` renders the signature table for hover and completion; ``settings``
finds and loads the gateway configuration a document is checked against; ``toml_index``
locates the names that configuration defines; one module per feature otherwise.
"""
