"""S/MIME recipes: sign, encrypt, verify, decrypt (CMS over asn1crypto and cryptography)."""
