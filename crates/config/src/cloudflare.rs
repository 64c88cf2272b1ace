//! The Cloudflare configuration, generated from the same rate-limit table the application
//! enforces, so the edge and the app never drift. `cargo xtask cloudflare` writes these
//! documents under `deploy/cloudflare/` (Rulesets API bodies, one per phase); a test fails when
//! the committed files are stale.

use serde_json::{json, Value};

use crate::limits::{LimitKey, RateLimit, RATE_LIMITS};

/// The Cloudflare Managed Ruleset.
const MANAGED_RULESET: &str = "efb7b8c949ac4650a09736fc376e9aee";
/// The Cloudflare OWASP Core Ruleset.
const OWASP_RULESET: &str = "4814384a9e5d4991b9815dcfc25d2f1f";

/// Cloudflare's match for a route pattern of ours (`{…}` matches one path segment, a final `*`
/// the rest of the path; the method `*` any method).
fn path_expression(method: &str, route: &str) -> String {
    let path = if route.contains('{') {
        let mut regex = String::from("^");
        for (i, segment) in route.trim_start_matches('/').split('/').enumerate() {
            if i > 0 || route.starts_with('/') {
                regex.push('/');
            }
            if segment.starts_with('{') {
                regex.push_str("[^/]+");
            } else if segment == "*" {
                regex.push_str(".*");
            } else {
                regex.push_str(&segment.replace('.', "\\\\."));
            }
        }
        regex.push('$');
        format!("http.request.uri.path matches \"{regex}\"")
    } else {
        format!("http.request.uri.path eq \"{route}\"")
    };
    if method == "*" {
        return format!("({path})");
    }
    format!("(http.request.method eq \"{method}\" and {path})")
}

/// What Cloudflare counts by for each of our keys. The organization and the user are not visible
/// at the edge; the bearer credential stands in for them there (the application still counts by
/// organization and by user).
fn characteristics(key: LimitKey) -> Vec<&'static str> {
    match key {
        LimitKey::Email => vec![
            "cf.colo.id",
            "lookup_json_string(http.request.body.raw, \"email\")",
        ],
        LimitKey::Ip => vec!["cf.colo.id", "ip.src"],
        LimitKey::Org => vec!["cf.colo.id", "http.request.headers[\"authorization\"]"],
        LimitKey::Token => vec!["cf.colo.id", "http.request.uri.path"],
        LimitKey::User => vec!["cf.colo.id", "http.request.headers[\"authorization\"]"],
    }
}

fn ratelimit_rule(r: &RateLimit) -> Value {
    json!({
        "ref": r.id,
        "description": format!("{} {}: {} per {} per {} s (defendable {})", r.method, r.route, r.limit, r.key.as_str(), r.window.as_secs(), r.id),
        "expression": path_expression(r.method, r.route),
        "action": "block",
        "action_parameters": {
            "response": {
                "status_code": 429,
                "content_type": "application/problem+json",
                "content": "{\"type\":\"about:blank\",\"title\":\"Too Many Requests\",\"status\":429,\"code\":\"rate_limited\"}"
            }
        },
        "ratelimit": {
            "characteristics": characteristics(r.key),
            "period": r.window.as_secs(),
            "requests_per_period": r.limit,
            "mitigation_timeout": r.window.as_secs()
        }
    })
}

/// Every generated file: `(file name, pretty JSON)`.
pub fn files() -> Vec<(&'static str, String)> {
    let pretty = |v: Value| serde_json::to_string_pretty(&v).expect("JSON serializes") + "\n";
    let ratelimit = json!({
        "description": "Defendable rate limits (generated from defendable-config's RATE_LIMITS; edit the table, not this file)",
        "kind": "zone",
        "phase": "http_ratelimit",
        "rules": RATE_LIMITS.iter().map(ratelimit_rule).collect::<Vec<_>>()
    });
    let managed = json!({
        "description": "Defendable WAF: Cloudflare Managed Ruleset and OWASP Core Ruleset at paranoia level 1",
        "kind": "zone",
        "phase": "http_request_firewall_managed",
        "rules": [
            {
                "ref": "managed-ruleset",
                "description": "Cloudflare Managed Ruleset",
                "expression": "true",
                "action": "execute",
                "action_parameters": { "id": MANAGED_RULESET }
            },
            {
                "ref": "owasp-core-pl1",
                "description": "OWASP Core Ruleset, paranoia level 1 (levels 2-4 disabled), blocking",
                "expression": "true",
                "action": "execute",
                "action_parameters": {
                    "id": OWASP_RULESET,
                    "overrides": {
                        "categories": [
                            { "category": "paranoia-level-2", "enabled": false },
                            { "category": "paranoia-level-3", "enabled": false },
                            { "category": "paranoia-level-4", "enabled": false }
                        ],
                        "rules": [
                            { "id": "6179ae15870a4bb7b2d480d4843b323c", "action": "block", "score_threshold": 60 }
                        ]
                    }
                }
            }
        ]
    });
    let custom = json!({
        "description": "Defendable custom firewall rules",
        "kind": "zone",
        "phase": "http_request_firewall_custom",
        "rules": [
            {
                "ref": "bot-challenge",
                "description": "Challenge likely bots below the account baseline (Bot Management score < 30), verified bots excepted",
                "expression": "(cf.bot_management.score lt 30 and not cf.bot_management.verified_bot)",
                "action": "managed_challenge"
            },
            {
                "ref": "internal-operator-only",
                "description": "/internal/* and /metrics only from operator egress addresses (set the list $defendable_operator_ips); the API also checks INTERNAL_ALLOWED_CIDRS and the key",
                "expression": "((starts_with(http.request.uri.path, \"/internal/\") or http.request.uri.path eq \"/metrics\") and not ip.src in $defendable_operator_ips)",
                "action": "block"
            }
        ]
    });
    let cache = json!({
        "description": "Defendable cache rules: never cache authenticated API responses or download redirects",
        "kind": "zone",
        "phase": "http_request_cache_settings",
        "rules": [
            {
                "ref": "no-cache-authenticated",
                "description": "Requests with credentials, share links, download redirects and object links bypass the cache",
                "expression": "(any(len(http.request.headers[\"authorization\"][*]) gt 0) or len(http.request.headers[\"x-internal-key\"]) gt 0 or starts_with(http.request.uri.path, \"/share/\") or starts_with(http.request.uri.path, \"/objects/\") or starts_with(http.request.uri.path, \"/auth/\"))",
                "action": "set_cache_settings",
                "action_parameters": { "cache": false }
            }
        ]
    });
    vec![
        ("http_ratelimit.json", pretty(ratelimit)),
        ("http_request_firewall_managed.json", pretty(managed)),
        ("http_request_firewall_custom.json", pretty(custom)),
        ("http_request_cache_settings.json", pretty(cache)),
    ]
}
