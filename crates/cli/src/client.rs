//! The API client: one place that sends a request, and one place that turns a refusal
//! (problem+json) into an [`Exit`] with a message saying what to do.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use crate::credentials::Token;
use crate::{Exit, EXIT_LIMIT};

/// How long a request may take before the client gives up (exports and downloads stream and
/// are not bounded by it).
const TIMEOUT: Duration = Duration::from_secs(60);

/// A client of one API base URL, with an optional bearer token.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<Token>,
}

/// A request body.
#[derive(Debug)]
pub enum Body {
    /// No body.
    None,
    /// A JSON value.
    Json(Value),
    /// JSON text sent as is (so numbers the client cannot represent reach the server unchanged).
    RawJson(String),
}

impl Body {
    /// A request body in the API's own shape (the type the server reads it as).
    pub fn of<T: serde::Serialize>(body: &T) -> Body {
        Body::Json(serde_json::to_value(body).expect("the API's request shapes serialize"))
    }
}

impl Api {
    /// A client for `base` (trailing slashes ignored).
    pub fn new(base: &str, token: Option<Token>) -> Result<Api, Exit> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("defendable-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Exit::server(format!("cannot build an HTTP client: {e}")))?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The token, if any.
    pub fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    /// The token, or an auth error saying how to get one.
    pub fn require_token(&self) -> Result<&Token, Exit> {
        self.token.as_ref().ok_or_else(|| {
            Exit::auth(format!(
                "not signed in to {}: run `defendable login --email you@example.com`, or set DEFENDABLE_TOKEN to an API key",
                self.base
            ))
        })
    }

    /// Sends a request; any status ≥ 400 becomes an [`Exit`]. `streaming` lifts the timeout.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
        streaming: bool,
    ) -> Result<Response, Exit> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if !streaming {
            req = req.timeout(TIMEOUT);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::RawJson(text) => req.header("content-type", "application/json").body(text),
        };
        let res = req.send().await.map_err(|e| {
            Exit::server(format!(
                "cannot reach {}: {}; check --api (or DEFENDABLE_API) and your network",
                self.base,
                root_cause(&e)
            ))
        })?;
        if res.status().is_client_error() || res.status().is_server_error() {
            return Err(self.refusal(res).await);
        }
        Ok(res)
    }

    /// Sends and reads a JSON answer (`null` for an empty one).
    pub async fn call(&self, method: Method, path: &str, body: Body) -> Result<Value, Exit> {
        let res = self.send(method, path, body, &[], false).await?;
        json_of(res).await
    }

    /// `GET` a JSON document.
    pub async fn get(&self, path: &str) -> Result<Value, Exit> {
        self.call(Method::GET, path, Body::None).await
    }

    /// GET `path` as one of the API's typed shapes (the types the server answers with).
    pub async fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, Exit> {
        typed(self.get(path).await?)
    }

    /// Every item of a cursor-paginated list, read as the API's typed items.
    pub async fn all_pages_as<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Vec<T>, Exit> {
        self.all_pages(path).await?.into_iter().map(typed).collect()
    }

    /// Every item of a cursor-paginated list (`{items, next_cursor}`, cursor parameter `cursor`).
    pub async fn all_pages(&self, path: &str) -> Result<Vec<Value>, Exit> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let sep = if path.contains('?') { '&' } else { '?' };
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}{sep}limit=100&cursor={}", encode(c)),
                None => format!("{path}{sep}limit=100"),
            };
            let page: AnyPage = self.get_as(&url).await?;
            items.extend(page.items);
            cursor = match page.next_cursor {
                Some(Value::String(s)) => Some(s),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            if cursor.is_none() {
                return Ok(items);
            }
        }
    }

    /// Turns a refusal into an exit code and a message saying what to do.
    async fn refusal(&self, res: Response) -> Exit {
        let status = res.status();
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let problem: ProblemDoc = res.json().await.unwrap_or_default();
        let code = problem.code.unwrap_or_default();
        let detail = problem
            .detail
            .or(problem.title)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        let said = if code.is_empty() {
            format!("{} ({status})", detail)
        } else {
            format!("{detail} ({status}, {code})")
        };
        match status {
            StatusCode::UNAUTHORIZED => Exit::auth(match &self.token {
                Some(t) => format!("{said}: {}", t.remedy()),
                None => format!(
                    "{said}: run `defendable login --email you@example.com`, or set DEFENDABLE_TOKEN"
                ),
            }),
            StatusCode::FORBIDDEN => Exit::auth(format!(
                "{said}: this needs another role or a signed-in user rather than an API key"
            )),
            StatusCode::NOT_FOUND => Exit::usage(format!(
                "{said}: check the name or id (and --org); you only see organizations you belong to"
            )),
            StatusCode::TOO_MANY_REQUESTS => Exit {
                code: EXIT_LIMIT,
                message: match retry_after {
                    Some(s) => format!("{said}: retry in {s} s"),
                    None => format!("{said}: retry later"),
                },
            },
            s if s.is_server_error() => Exit::server(format!(
                "{said}: the server failed; retry shortly, and report it with the X-Request-Id if it persists"
            )),
            _ => Exit::usage(said),
        }
    }
}

/// Reads a JSON answer (`null` for an empty one).
pub async fn json_of(res: Response) -> Result<Value, Exit> {
    let bytes = res
        .bytes()
        .await
        .map_err(|e| Exit::server(format!("reading the answer: {}", root_cause(&e))))?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        Exit::server(format!(
            "the server answered something that is not JSON: {e}"
        ))
    })
}

/// Percent-encodes a path segment or query value (everything but ASCII letters and digits).
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The innermost cause of a transport error, which names what actually failed.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A response read as one of the API's typed shapes; any other shape is a server fault.
pub fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Exit> {
    serde_json::from_value(value)
        .map_err(|e| Exit::server(format!("the server answered an unexpected shape: {e}")))
}

/// The members of an RFC 9457 problem document the CLI reports (`docs/errors.md` lists the
/// codes); anything else in it is ignored, and a body that is not one reads as empty.
#[derive(Debug, Default, serde::Deserialize)]
struct ProblemDoc {
    code: Option<String>,
    title: Option<String>,
    detail: Option<String>,
}

/// Any of the API's cursor pages: the items, and a cursor that is an id, a slug or a seq
/// depending on the list.
#[derive(Debug, serde::Deserialize)]
struct AnyPage {
    items: Vec<Value>,
    next_cursor: Option<Value>,
}
