//! A share link's token: 256 random bits, base64url (43 characters). Only its SHA-256 is
//! stored; the link (`/share/{token}`) is the only place the token itself appears. The ledger
//! mints it with the share, so no caller chooses a link's secret.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom as _, SystemRandom};

/// A share link's secret.
#[derive(Clone)]
pub struct ShareToken(String);

impl ShareToken {
    /// Length of the encoded token.
    pub const LEN: usize = 43;

    /// A fresh token from the CSPRNG.
    pub fn generate() -> ShareToken {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the operating system's CSPRNG is available");
        ShareToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Text with a token's shape (43 base64url characters, blanks around it ignored), else
    /// `None`: whatever is not a token is as unknown as a wrong one.
    pub fn parse(raw: &str) -> Option<ShareToken> {
        let raw = raw.trim();
        let shaped = raw.len() == Self::LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        shaped.then(|| ShareToken(raw.to_owned()))
    }

    /// The SHA-256 of its text: what is stored and looked up.
    pub fn hash(&self) -> [u8; 32] {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }

    /// The token's text, for the one answer that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ShareToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShareToken(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_shaped_and_hash_their_text() {
        let a = ShareToken::generate();
        let b = ShareToken::generate();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), ShareToken::LEN);
        let again = ShareToken::parse(&format!(" {} ", a.expose())).expect("its own text parses");
        assert_eq!(again.hash(), a.hash());
        assert_ne!(a.hash(), b.hash());
        // The SHA-256 of the text (what links stored before the ledger minted them hold).
        let known =
            ShareToken::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").expect("shape");
        assert_eq!(
            known.hash().to_vec(),
            ring::digest::digest(&ring::digest::SHA256, known.expose().as_bytes())
                .as_ref()
                .to_vec()
        );
        for bad in [
            "",
            "short",
            &"A".repeat(44),
            &format!("{}=", "A".repeat(42)),
        ] {
            assert!(ShareToken::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(format!("{a:?}"), "ShareToken(redacted)");
    }
}
