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
