//! Receipts: recording (with retries under one `Idempotency-Key`), listing, showing, sharing.

use super::*;

/// Reads a JSON object from a file or stdin, returning its text unchanged.
pub(super) fn json_object_text(source: &str, input: &mut dyn BufRead) -> Result<String, Exit> {
    let text = if source == "-" {
        let mut s = String::new();
        input
            .read_to_string(&mut s)
            .map_err(|e| Exit::usage(format!("reading stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(source).map_err(|e| Exit::io(Path::new(source), e))?
    };
    // Checked here for a clear message; sent as written, so the server judges every number.
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(_)) => Ok(text),
        Ok(_) => Err(Exit::usage(format!("{source}: expected a JSON object"))),
        Err(e) => Err(Exit::usage(format!("{source}: not JSON: {e}"))),
    }
}

pub(super) fn receipt_row(r: &ReceiptView) -> Vec<String> {
    vec![
        r.seq().map(|s| s.to_string()).unwrap_or_default(),
        r.receipt_id.clone(),
        r.kind().unwrap_or_default().to_owned(),
        r.created_at().unwrap_or_default().to_owned(),
    ]
}

pub(super) async fn receipts(ctx: &mut Context<'_>, c: Receipts) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let path = ctx.org_path("/receipts")?;
    match c {
        Receipts::Record {
            kind,
            public,
            private,
            idempotency_key,
        } => {
            let public = json_object_text(&public, ctx.input)?;
            let private = match private {
                Some(p) => json_object_text(&p.display().to_string(), ctx.input)?,
                None => "null".to_owned(),
            };
            let kind_json = serde_json::to_string(&kind).map_err(|e| Exit::usage(e.to_string()))?;
            let body = format!(r#"{{"kind":{kind_json},"public":{public},"private":{private}}}"#);
            let key = idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let receipt: ReceiptView = typed(record_with_retries(&api, &path, &body, &key).await?)?;
            let human = format!(
                "recorded {} (seq {}, kind {kind}) in {}",
                receipt.receipt_id,
                receipt.seq().map(|s| s.to_string()).unwrap_or_default(),
                ctx.org()?
            );
            Ok(Output::of(&receipt, human))
        }
        Receipts::List { kind, after, limit } => {
            let mut query = format!("?limit={limit}");
            if let Some(a) = after {
                query.push_str(&format!("&after={a}"));
            }
            if let Some(k) = kind {
                query.push_str(&format!("&kind={}", encode(&k)));
            }
            let page: ReceiptPage = api.get_as(&format!("{path}{query}")).await?;
            let rows: Vec<Vec<String>> = page.items.iter().map(receipt_row).collect();
            let mut human = table(&["SEQ", "ID", "KIND", "CREATED"], &rows);
            if let Some(next) = page.next_cursor {
                human.push_str(&format!("\nmore: --after {next}"));
            }
            Ok(Output::of(&page, human))
        }
        Receipts::Show { id } => {
            let r: ReceiptView = api.get_as(&format!("{path}/{}", encode(&id))).await?;
            let human = serde_json::to_string_pretty(&r).unwrap_or_default();
            Ok(Output::of(&r, human))
        }
        Receipts::Share {
            id,
            revoke,
            expires_in,
        } => {
            let share_path = format!("{path}/{}/share", encode(&id));
            if revoke {
                api.call(Method::DELETE, &share_path, Body::None).await?;
                return Ok(Output::new(
                    json!({"ok": true, "receipt_id": id}),
                    format!("every share link of {id} now answers 404"),
                ));
            }
            let body = match expires_in {
                Some(d) => Body::of(&ShareRequest {
                    expires_in: Some(d.as_secs()),
                }),
                None => Body::None,
            };
            let share: ShareLink = typed(api.call(Method::POST, &share_path, body).await?)?;
            let url = &share.url;
            let expiry = match &share.expires_at {
                Some(at) => format!("\nexpires at {at}"),
                None => String::new(),
            };
            let human = format!(
                "share link: {url}\nproof bundle: {}{expiry}\nanyone can check it: defendable verify {url}",
                share.proof_url
            );
            Ok(Output::of(&share, human))
        }
    }
}

/// Records with one Idempotency-Key, retrying network and server failures, so a receipt is
/// recorded once however often the request is sent.
pub(super) async fn record_with_retries(
    api: &Api,
    path: &str,
    body: &str,
    key: &str,
) -> Result<Value, Exit> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = api
            .send(
                Method::POST,
                path,
                Body::RawJson(body.to_owned()),
                &[("idempotency-key", key)],
                false,
            )
            .await;
        match sent {
            Ok(res) => return crate::client::json_of(res).await,
            Err(e) if e.code == crate::EXIT_SERVER && attempt < 3 => {
                eprintln!("{}; retrying with the same Idempotency-Key", e.message);
                tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
