//! The `defendable` command-line client and offline receipt verifier (issue 7; nothing here yet).
