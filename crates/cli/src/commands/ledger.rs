//! The chain as a whole: verify, export, watch.

use super::*;

pub(super) async fn ledger(ctx: &mut Context<'_>, c: Ledger) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    let org = ctx.org()?;
    match c {
        Ledger::Watch {
            vkeys,
            trust_new_keys,
        } => {
            let opts = TrustOptions {
                keys: Vec::new(),
                vkeys,
                trust_new_keys,
            };
            monitor::watch(&api, &org, &opts).await
        }
        Ledger::Verify => {
            let v: ChainCheck = api.get_as(&ctx.org_path("/ledger/verify")?).await?;
            if !v.valid {
                let (seq, reason) = v
                    .failure
                    .map(|f| (f.seq.to_string(), f.reason))
                    .unwrap_or_else(|| ("-".to_owned(), "-".to_owned()));
                return Err(Exit::verify(format!(
                    "the chain of {org} fails at receipt seq {seq}: {reason}"
                )));
            }
            let human = format!(
                "the chain and tree of {org} verify: {}, head {}, tree size {}",
                count(v.checked, "receipt"),
                v.head,
                v.tree_size
            );
            Ok(Output::of(&v, human))
        }
        Ledger::Export { out } => {
            let res = api
                .send(
                    Method::GET,
                    &ctx.org_path("/ledger/export")?,
                    Body::None,
                    &[],
                    true,
                )
                .await?;
            let lines = save_stream(res, &out).await?;
            let receipts = lines.saturating_sub(1);
            Ok(Output::new(
                json!({"ok": true, "path": out.display().to_string(), "receipts": receipts}),
                format!(
                    "exported {} of {org} and a signed checkpoint to {}; check it offline with `defendable verify {}`",
                    count(receipts, "receipt"),
                    out.display(),
                    out.display()
                ),
            ))
        }
    }
}

/// Streams a response into `out` through a temporary file; returns the number of lines.
pub(super) async fn save_stream(mut res: reqwest::Response, out: &Path) -> Result<u64, Exit> {
    use std::io::Write;
    let mut tmp_name = out.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| Exit::io(&tmp, e))?);
    let mut lines = 0u64;
    loop {
        match res.chunk().await {
            Ok(Some(chunk)) => {
                lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
                file.write_all(&chunk).map_err(|e| Exit::io(&tmp, e))?;
            }
            Ok(None) => break,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(Exit::server(format!(
                    "the export broke off ({}); nothing was saved, run it again",
                    root_cause(&e)
                )));
            }
        }
    }
    file.flush().map_err(|e| Exit::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, out).map_err(|e| Exit::io(out, e))?;
    Ok(lines)
}
