//! `defendable login --sso`: single sign-on for a native app (RFC 8252). The CLI listens on a
//! loopback port, starts the sign-in with that port and the S256 challenge of a verifier only it
//! holds, and sends the person's browser to the identity provider. The server's callback sends
//! the browser back to the port with a one-time link, which the CLI redeems with its verifier:
//! the link is useless to anyone else, and a sign-in URL forwarded to someone else sends their
//! browser to a port on their own machine, never to this one. The CLI also chooses a `state`
//! the callback sends back beside the link, and takes only the request that carries it: a local
//! process or a web page probing loopback ports cannot hand the CLI a link of its own.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use defendable_identity::view::{SessionView, VerifyBody};
use defendable_sso::view::{CliStart, SsoStarted, StartSso};
use reqwest::Method;
use ring::rand::{SecureRandom as _, SystemRandom};
use subtle::ConstantTimeEq as _;

use crate::client::{typed, Api, Body};
use crate::Exit;

/// What picks the connection.
#[derive(Debug, Clone)]
pub enum By {
    /// An address whose verified domain names it.
    Email(String),
    /// An organization with one connection.
    Org(String),
    /// An invite (its token) to accept by signing in.
    Invite(String),
}

/// Signs in through single sign-on and returns the session. `open` tries the platform's
/// browser opener; the URL is printed either way.
pub async fn sign_in(api: &str, by: By, open: bool) -> Result<SessionView, Exit> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| Exit::usage(format!("listening on 127.0.0.1 for the sign-in: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Exit::usage(format!("listening on 127.0.0.1: {e}")))?
        .port();
    let verifier = random_value()?;
    let cli_state = random_value()?;
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    let mut body = StartSso {
        cli: Some(CliStart {
            port,
            code_challenge: challenge,
            state: cli_state.clone(),
        }),
        ..StartSso::default()
    };
    match by {
        By::Email(email) => body.email = Some(email),
        By::Org(org) => body.org = Some(org),
        By::Invite(invite) => body.invite = Some(invite),
    }
    let anonymous = Api::new(api, None)?;
    let started: SsoStarted = typed(
        anonymous
            .call(Method::POST, "/auth/sso/start", Body::of(&body))
            .await?,
    )?;
    let SsoStarted {
        authorization_url: url,
        expires_in,
    } = started;
    eprintln!("Sign in with your identity provider in a browser on this machine:\n{url}");
    if open {
        open_browser(&url);
    }
    let token = tokio::time::timeout(
        Duration::from_secs(expires_in),
        tokio::task::spawn_blocking(move || wait_for_link(&listener, &cli_state)),
    )
    .await
    .map_err(|_| Exit::auth("the sign-in was not completed in time; run the command again"))?
    .map_err(|e| Exit::usage(format!("waiting for the browser: {e}")))??;
    typed(
        anonymous
            .call(
                Method::POST,
                "/auth/verify",
                Body::of(&VerifyBody {
                    token,
                    code_verifier: Some(verifier),
                }),
            )
            .await?,
    )
}

/// 256 random bits, base64url: the PKCE verifier and the loopback state.
fn random_value() -> Result<String, Exit> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Exit::usage("the operating system's random source failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Best effort: a browser that does not open leaves the printed URL.
fn open_browser(url: &str) {
    let opener: &[&str] = if cfg!(target_os = "macos") {
        &["open"]
    } else if cfg!(windows) {
        &["cmd", "/C", "start", ""]
    } else {
        &["xdg-open"]
    };
    let _ = std::process::Command::new(opener[0])
        .args(&opener[1..])
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// Accepts requests on the loopback port until one carries this sign-in's `state` with the
/// one-time link's `token` (or the server's `error`), answering each with a short page. A
/// request without the state, or with another, is answered 404 and changes nothing.
fn wait_for_link(listener: &TcpListener, state: &str) -> Result<String, Exit> {
    loop {
        let (mut stream, _) = listener
            .accept()
            .map_err(|e| Exit::usage(format!("waiting for the browser: {e}")))?;
        let Some(query) = request_query(&mut stream) else {
            respond(&mut stream, "404 Not Found", "Nothing here.");
            continue;
        };
        let param = |name: &str| {
            query.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k == name).then(|| {
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned()
                })
            })
        };
        let ours = param("state").is_some_and(|s| bool::from(s.as_bytes().ct_eq(state.as_bytes())));
        if !ours {
            respond(&mut stream, "404 Not Found", "Nothing here.");
            continue;
        }
        if let Some(token) = param("token") {
            respond(
                &mut stream,
                "200 OK",
                "You are signed in. You can close this tab and return to the terminal.",
            );
            return Ok(token);
        }
        if let Some(error) = param("error") {
            respond(&mut stream, "200 OK", "The sign-in was refused.");
            return Err(Exit::auth(format!("the sign-in was refused: {error}")));
        }
        respond(&mut stream, "404 Not Found", "Nothing here.");
    }
}

/// The query of a `GET` request's target, if the request is one.
fn request_query(stream: &mut TcpStream) -> Option<String> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut line = head.lines().next()?.split(' ');
    let (method, target) = (line.next()?, line.next()?);
    (method == "GET").then(|| target.split_once('?').map(|(_, q)| q.to_owned()))?
}

fn respond(stream: &mut TcpStream, status: &str, text: &str) {
    let page = format!("<!doctype html><meta charset=utf-8><title>Defendable</title><p>{text}</p>");
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
    let _ = stream.flush();
}
