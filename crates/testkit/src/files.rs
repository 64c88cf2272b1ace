//! Files a test makes or reads: temporary directories and the development mail outbox.

use std::path::{Path, PathBuf};

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory under the system temp directory.
    #[allow(clippy::new_without_default)]
    pub fn new() -> TempDir {
        let p =
            std::env::temp_dir().join(format!("defendable-it-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Undoes quoted-printable soft breaks and escapes (lettre encodes long lines this way).
pub fn decode_quoted_printable(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `token` query parameter of the first link in a message.
pub fn token_from_mail(text: &str) -> String {
    let start = text.find("token=").expect("a link with a token") + "token=".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// The tokens of every link mailed to `to` in an outbox directory, oldest first (none when the
/// outbox does not exist yet).
pub fn outbox_tokens(outbox: &Path, to: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(outbox) else {
        return Vec::new();
    };
    let mut mails: Vec<(std::time::SystemTime, String)> = Vec::new();
    for entry in entries.flatten() {
        let raw = std::fs::read_to_string(entry.path()).expect("readable mail");
        let text = decode_quoted_printable(&raw);
        if text
            .lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("To: {to}")))
        {
            let modified = entry.metadata().and_then(|m| m.modified()).expect("mtime");
            mails.push((modified, text));
        }
    }
    mails.sort_by_key(|(t, _)| *t);
    mails
        .iter()
        .map(|(_, text)| token_from_mail(text))
        .collect()
}
