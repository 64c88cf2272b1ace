//! Offline verification of a share link, token or file.

use super::*;

pub(super) async fn run_verify(
    ctx: &Context<'_>,
    target: &str,
    opts: &TrustOptions,
) -> Result<Output, Exit> {
    if let Some(i) = target.find("/share/") {
        let token = target[i + "/share/".len()..]
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default();
        return monitor::verify_share(&target[..i], token, opts).await;
    }
    if Path::new(target).exists() {
        // Proving a file's checkpoint consistent with a saved one uses member access, if any.
        let member = ctx.client()?;
        let signed_in = member.token().is_some();
        return monitor::verify_file(
            Path::new(target),
            &ctx.api,
            Some((&member, signed_in)),
            opts,
        )
        .await;
    }
    if target.len() == 43
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return monitor::verify_share(&ctx.api, target, opts).await;
    }
    Err(Exit::usage(format!(
        "{target:?} is neither a share URL, a share token nor a file"
    )))
}
