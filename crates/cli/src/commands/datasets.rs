//! The dataset catalog and verified downloads.

use super::*;

pub(super) async fn datasets(ctx: &mut Context<'_>, c: Datasets) -> Result<Output, Exit> {
    let api = ctx.authed()?;
    match c {
        Datasets::List { query } => {
            let path = match query {
                Some(q) => format!("/datasets/catalog?q={}", encode(&q)),
                None => "/datasets/catalog".to_owned(),
            };
            Ok(listed(
                api.all_pages_as::<DatasetView>(&path).await?,
                &["SLUG", "VERSION", "SIZE", "LICENSE", "TITLE"],
                |d| {
                    vec![
                        d.slug.clone(),
                        d.version.clone(),
                        bytes(u64::try_from(d.size).unwrap_or(0)),
                        d.license.clone(),
                        d.title.clone(),
                    ]
                },
            ))
        }
        Datasets::Show { slug } => {
            let d: DatasetView = api
                .get_as(&format!("/datasets/catalog/{}", encode(&slug)))
                .await?;
            let human = [
                ("slug", d.slug.clone()),
                ("title", d.title.clone()),
                ("description", d.description.clone()),
                ("version", d.version.clone()),
                ("license", d.license.clone()),
                ("media_type", d.media_type.clone()),
                ("size", d.size.to_string()),
                ("blake3", d.blake3.clone()),
                ("verified_at", when(&d.verified_at)),
            ]
            .iter()
            .map(|(k, v)| format!("{k:<12} {v}"))
            .collect::<Vec<_>>()
            .join("\n");
            Ok(Output::of(&d, human))
        }
        Datasets::Download(args) => {
            // The grant's org: --org, else the saved default, else the server's choice.
            let org = ctx.org().ok();
            let plan = Plan {
                out: args.out.unwrap_or_else(|| args.slug.clone().into()),
                slug: args.slug,
                org,
                retries: args.retries,
                progress: !ctx.json,
            };
            download::download(&api, &plan).await
        }
    }
}
