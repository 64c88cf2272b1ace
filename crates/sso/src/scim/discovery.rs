//! The discovery documents: schemas, resource types and the service provider configuration.

use serde_json::{json, Value};

use super::*;

/// The discovery documents with their locations under `base`.
pub fn schemas(base: &str) -> Vec<Value> {
    let mut all: Vec<Value> =
        serde_json::from_str(include_str!("schemas.json")).expect("schemas.json is valid JSON");
    for s in &mut all {
        let rel = s["meta"]["location"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        s["meta"]["location"] = json!(format!("{base}{rel}"));
    }
    all
}

/// The resource types, with their locations under `base`.
pub fn resource_types(base: &str) -> Vec<Value> {
    [Kind::User, Kind::Group]
        .iter()
        .map(|k| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
                "id": k.name(),
                "name": k.name(),
                "description": match k {
                    Kind::User => "Directory users",
                    Kind::Group => "Directory groups",
                },
                "endpoint": k.endpoint(),
                "schema": k.schema(),
                "meta": {
                    "resourceType": "ResourceType",
                    "location": format!("{base}/ResourceTypes/{}", k.name()),
                },
            })
        })
        .collect()
}

/// The service provider's configuration.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": PAGE_MAX },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": false },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Connection token",
            "description": "The connection's SCIM token (dscim_…), issued by an owner with POST /orgs/{org}/sso/connections/{id}/scim-token, as a bearer token",
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}
