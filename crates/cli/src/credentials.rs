//! Where the client keeps its session: `credentials.json` under the user's configuration
//! directory (`$XDG_CONFIG_HOME/defendable` or `~/.config/defendable` on Linux), one entry per
//! API base URL, written with mode 0600 in a 0700 directory. `DEFENDABLE_TOKEN` takes precedence
//! over the file, so CI pipelines never need one.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Exit;

/// The variable that carries a token (an API key or a session token) for scripts.
pub const TOKEN_VAR: &str = "DEFENDABLE_TOKEN";

/// A bearer token and where it came from. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct Token {
    secret: String,
    /// Where it came from, for messages.
    pub source: TokenSource,
}

/// Where a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `DEFENDABLE_TOKEN`.
    Env,
    /// The credentials file.
    File,
}

impl Token {
    /// A token from `source`.
    pub fn new(secret: String, source: TokenSource) -> Token {
        Token { secret, source }
    }

    /// The secret, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// Whether it is an API key (`dfd_…`) rather than a session.
    pub fn is_api_key(&self) -> bool {
        self.secret.starts_with("dfd_")
    }

    /// What to tell the user to do when the server refuses it.
    pub fn remedy(&self) -> &'static str {
        match self.source {
            TokenSource::Env => "the token in DEFENDABLE_TOKEN was refused; replace or unset it",
            TokenSource::File => {
                "your saved session was refused (expired or signed out); run `defendable login --email …`"
            }
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("secret", &"[redacted]")
            .field("source", &self.source)
            .finish()
    }
}

/// One saved session.
#[derive(Clone, Serialize, Deserialize)]
pub struct Saved {
    /// The session token.
    pub token: String,
    /// The signed-in address.
    pub email: String,
    /// The organization commands use when `--org` is not given.
    pub org: Option<String>,
}

impl fmt::Debug for Saved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saved")
            .field("token", &"[redacted]")
            .field("email", &self.email)
            .field("org", &self.org)
            .finish()
    }
}

/// The credentials file: saved sessions by API base URL.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Credentials {
    /// Sessions by API base URL.
    #[serde(default)]
    pub servers: BTreeMap<String, Saved>,
}

/// The credentials file's path.
pub fn path() -> Result<PathBuf, Exit> {
    dirs::config_dir()
        .map(|d| d.join("defendable").join("credentials.json"))
        .ok_or_else(|| {
            Exit::usage(
                "no configuration directory (set HOME or XDG_CONFIG_HOME), or set DEFENDABLE_TOKEN",
            )
        })
}

impl Credentials {
    /// Reads the file at `path` (empty when it does not exist).
    pub fn load(path: &Path) -> Result<Credentials, Exit> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Exit::usage(format!(
                    "{} is not a credentials file ({e}); delete it and log in again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
            Err(e) => Err(Exit::io(path, e)),
        }
    }

    /// Writes the file atomically: a 0600 temporary file in a 0700 directory, then a rename.
    pub fn store(&self, path: &Path) -> Result<(), Exit> {
        let dir = path
            .parent()
            .ok_or_else(|| Exit::usage("the credentials path has no directory"))?;
        create_private_dir(dir)?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| Exit::usage(e.to_string()))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(|e| Exit::io(&tmp, e))?;
        #[cfg(unix)]
        {
            // An older file created with a wider mode keeps it on open; narrow it.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Exit::io(&tmp, e))?;
        }
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(|e| Exit::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Exit::io(path, e))
    }
}

fn create_private_dir(dir: &Path) -> Result<(), Exit> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| Exit::io(dir, e))
}

/// The token to use for `api`: `DEFENDABLE_TOKEN`, else the saved session.
pub fn token_for(api: &str, env_token: Option<String>) -> Result<Option<Token>, Exit> {
    if let Some(t) = env_token.filter(|t| !t.trim().is_empty()) {
        return Ok(Some(Token::new(t.trim().to_owned(), TokenSource::Env)));
    }
    let saved = Credentials::load(&path()?)?;
    Ok(saved
        .servers
        .get(api)
        .map(|s| Token::new(s.token.clone(), TokenSource::File)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_private_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("dfd-cred-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("defendable").join("credentials.json");
        let mut c = Credentials::default();
        c.servers.insert(
            "http://x".into(),
            Saved {
                token: "secret-token".into(),
                email: "a@example.com".into(),
                org: Some("acme".into()),
            },
        );
        c.store(&path).expect("stored");
        let back = Credentials::load(&path).expect("loaded");
        assert_eq!(back.servers["http://x"].token, "secret-token");
        assert!(!format!("{back:?}").contains("secret-token"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().expect("dir")), 0o700);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
