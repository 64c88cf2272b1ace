//! The OpenAPI document is snapshotted so every API change shows up in review.

use crate::helpers::TestApp;

#[actix_web::test]
async fn openapi_document_matches_the_snapshot() {
    let app = TestApp::spawn().await;
    let res = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("r");
    assert_eq!(res.status(), 200);
    let doc: serde_json::Value = res.json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    insta::assert_json_snapshot!("openapi", doc, { ".info.version" => "[version]" });
}

/// `docs/errors.md` lists every code the API answers with, generated from `ErrorCode`.
#[test]
fn error_reference_in_docs_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/errors.md");
    let expected = defendable_api::error::error_reference();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).expect("write docs/errors.md");
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/errors.md is out of date; run UPDATE_DOCS=1 cargo test -p defendable-api --test it error_reference"
    );
}
