//! Receipts: canonical JSON (RFC 8785), the SHA-256 hash chain per organization, verification and signed checkpoints (issue 4; nothing here yet).
