//! Seed a deployment, back it up, drill the backup (passing, then failing on a tampered
//! receipt), record a rotation, and build the evidence packet from a live server.

use object_store::ObjectStoreExt as _;
use std::sync::Arc;

use defendable_config::{Config, Env};
use defendable_ledger::{Draft, ReceiptKind};
use defendable_ops::drill::{restore_drill, DrillOptions, Target};
use defendable_ops::packet::{packet, PacketOptions};
use defendable_ops::rotation::{rotation_receipt, OldUses};
use defendable_ops::{backup::backup, manifest, Deployment, OpsError};
use defendable_testkit::files::TempDir;
use defendable_testkit::TestDb;
use serde_json::json;
use std::path::PathBuf;
use uuid::Uuid;

const RUNNER_TOKEN: &str = "ops-runner-Qa7Ws9Ed2Rf4Tg6Yh8Uj1Ik3Ol5";

fn pairs(db: &TestDb, data: &TempDir, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db.url().to_owned()),
        ("DATA_DIR".into(), data.path().display().to_string()),
        ("OPERATOR_ORG".into(), "operations".into()),
        ("RUNNER_TOKEN".into(), RUNNER_TOKEN.into()),
        ("BIND_ADDR".into(), "127.0.0.1:0".into()),
        ("DEV_LOG_MAIL_LINKS".into(), "false".into()),
    ];
    p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    p
}

pub(crate) async fn open(db: &TestDb, data: &TempDir, extra: &[(&str, &str)]) -> (Deployment, Env) {
    let env = Env::from_pairs(pairs(db, data, extra));
    let config = Config::parse(&env).expect("config");
    (Deployment::open(config).await.expect("opens"), env)
}

const ORGS: [&str; 3] = ["operations", "acme", "globex"];

/// Three organizations with members, receipts in each chain, and one dataset with its object.
pub(crate) async fn seed(dep: &Deployment) -> Vec<Uuid> {
    let mut client = dep.pool.get().await.expect("client");
    let tx = client.transaction().await.expect("tx");
    let mut ids = Vec::new();
    for (i, slug) in ORGS.iter().enumerate() {
        let org = Uuid::new_v4();
        tx.execute(
            "INSERT INTO orgs (id, slug, name) VALUES ($1, $2, $2)",
            &[&org, slug],
        )
        .await
        .expect("org");
        for m in 0..=i {
            let user = Uuid::new_v4();
            let email = format!("member{m}@{slug}.example");
            tx.execute(
                "INSERT INTO users (id, email) VALUES ($1, $2)",
                &[&user, &email],
            )
            .await
            .expect("user");
            let role = if m == 0 { "owner" } else { "member" };
            tx.execute(
                "INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)",
                &[&org, &user, &role],
            )
            .await
            .expect("membership");
        }
        for n in 0..(5 + i as i64) {
            let draft = Draft::new(
                ReceiptKind::parse("run").expect("kind"),
                json!({"suite": "unit", "n": n}),
                Some(json!({"runner": "ci-7.internal"})),
            )
            .expect("draft");
            defendable_ledger::store::append_in(&tx, org, draft)
                .await
                .expect("append");
        }
        ids.push(org);
    }
    let bytes = b"region,count\nnorth,12\nsouth,30\n".repeat(1000);
    dep.objects
        .put(
            &object_store::path::Path::from("raw/census.csv"),
            bytes.clone().into(),
        )
        .await
        .expect("put");
    tx.execute(
        "INSERT INTO datasets (slug, title, description, license, media_type, current_version)
         VALUES ('census', 'Census', '', 'CC0', 'text/csv', '1')",
        &[],
    )
    .await
    .expect("dataset");
    tx.execute(
        "INSERT INTO dataset_versions (slug, version, object_key, size, blake3)
         VALUES ('census', '1', 'raw/census.csv', $1, $2)",
        &[
            &(bytes.len() as i64),
            &blake3::hash(&bytes).to_hex().to_string(),
        ],
    )
    .await
    .expect("version");
    tx.commit().await.expect("commit");
    ids
}

async fn drill_receipts(dep: &Deployment, operator: Uuid) -> Vec<serde_json::Value> {
    let client = dep.pool.get().await.expect("client");
    client
        .query(
            "SELECT canonical FROM receipts WHERE org_id = $1 AND kind = 'restore_drill' ORDER BY seq",
            &[&operator],
        )
        .await
        .expect("query")
        .iter()
        .map(|r| serde_json::from_slice(&r.get::<_, Vec<u8>>(0)).expect("json"))
        .collect()
}

#[tokio::test]
async fn backup_and_drill_pass_then_a_tampered_receipt_fails_the_drill_by_org_and_seq() {
    let db = TestDb::new().await;
    let data = TempDir::new();
    let (dep, _) = open(&db, &data, &[]).await;
    let orgs = seed(&dep).await;
    let out = TempDir::new();

    let first = backup(&dep, out.path()).await.expect("backup");
    let m = &first.manifest;
    assert_eq!(
        (m.counts.users, m.counts.orgs, m.counts.memberships),
        (6, 3, 6)
    );
    assert_eq!(m.counts.receipts, 5 + 6 + 7);
    assert_eq!(m.counts.dataset_versions, 1);
    assert_eq!(m.chains.len(), 3);
    assert_eq!(m.checkpoints.len(), 3);
    assert_eq!(m.tree_checkpoints.len(), 3);
    let acme = m
        .chains
        .iter()
        .find(|c| c.org == orgs[1])
        .expect("acme chain");
    assert_eq!((acme.receipts, acme.head_seq), (6, 5));
    let dump = std::fs::read(first.dir.join(&m.dump.file)).expect("dump");
    assert!(
        dump.starts_with(b"age-encryption.org/v1\n"),
        "encrypted with age"
    );
    assert!(
        !dump
            .windows(b"member0@acme".len())
            .any(|w| w == b"member0@acme"),
        "no plaintext reaches the disk"
    );
    assert_eq!(
        m.dump.sha256,
        defendable_ops::sha256_file(&first.dir.join(&m.dump.file)).expect("sha")
    );

    // On a drill host: production settings, the backup identity and public keys only (no
    // private signing key). Into a throwaway cluster, the drill passes and records itself.
    let public = dep.published_keys().expect("keys")[0].public_key.clone();
    let identity = data.path().join("dev-secrets").join("backup_identity");
    let identity = identity.to_str().expect("utf8");
    // The backup host's signing key stays there; the drill host pins its vkey.
    let backup_vkey = manifest::backup_vkey(&dep.backup_key().expect("backup key"));
    let (drill_host, _) = open(
        &db,
        &data,
        &[
            ("APP_ENV", "production"),
            ("LEDGER_NAME", "localhost-dev"),
            ("BACKUP_IDENTITY_FILE", identity),
            ("LEDGER_SIGNING_KEYS_PREVIOUS", &public),
            ("BACKUP_VKEY", &backup_vkey),
        ],
    )
    .await;
    assert!(
        drill_host.signing_key().is_err(),
        "no private key on the drill host"
    );
    let cluster = TempDir::new();
    let report = restore_drill(
        &drill_host,
        &DrillOptions {
            backup: first.dir.clone(),
            target: Target::Cluster(cluster.path().join("pg")),
            sample: 5,
            report: None,
            allow_unsigned_manifest: false,
        },
    )
    .await
    .expect("drill runs");
    assert!(report.ok, "{}", report.human());
    assert_eq!(report.counts, m.counts);
    assert_eq!((report.chains, report.objects_sampled), (3, 1));
    let roots = report
        .checks
        .iter()
        .find(|c| c.name == "tree roots")
        .expect("tree roots check");
    assert!(
        roots.ok
            && roots
                .detail
                .starts_with("3 Merkle roots recomputed from 18 restored receipts"),
        "{}",
        roots.detail
    );
    assert!(
        !cluster.path().join("pg").exists(),
        "the throwaway cluster is removed"
    );
    let written: serde_json::Value = serde_json::from_slice(
        &std::fs::read(report.report_path.as_ref().expect("report path")).expect("report file"),
    )
    .expect("report json");
    assert_eq!(written["ok"], true);
    let recorded = drill_receipts(&dep, orgs[0]).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["public"]["result"], "pass");
    assert_eq!(recorded[0]["public"]["backup_sha256"], json!(m.dump.sha256));
    assert_eq!(recorded[0]["public"]["counts"]["receipts"], 18);
    assert!(
        recorded[0].get("private").is_none(),
        "hosts and paths stay private"
    );
    assert!(!recorded[0]
        .to_string()
        .contains(out.path().to_str().expect("utf8")));

    // One byte of acme's receipt seq 2 changes in storage (past the append-only trigger).
    let client = dep.pool.get().await.expect("client");
    client
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             UPDATE receipts SET canonical = set_byte(canonical, length(canonical) / 2,
                    get_byte(canonical, length(canonical) / 2) # 1)
              WHERE org_id = '{}' AND seq = 2;
             SET session_replication_role = origin;",
            orgs[1]
        ))
        .await
        .expect("tamper");
    let second = backup(&dep, out.path()).await.expect("second backup");
    let admin = defendable_ops::postgres::with_database(db.url(), "postgres").expect("admin url");
    let report = restore_drill(
        &dep,
        &DrillOptions {
            backup: second.dir.clone(),
            target: Target::Server(admin),
            sample: 1,
            report: None,
            allow_unsigned_manifest: false,
        },
    )
    .await
    .expect("drill runs");
    assert!(!report.ok, "{}", report.human());
    let chains = report
        .checks
        .iter()
        .find(|c| c.name == "chains")
        .expect("chains check");
    assert!(!chains.ok);
    assert!(
        chains.detail.contains("org acme") && chains.detail.contains("receipt seq 2"),
        "{}",
        chains.detail
    );
    let roots = report
        .checks
        .iter()
        .find(|c| c.name == "tree roots")
        .expect("tree roots check");
    assert!(
        !roots.ok
            && roots.detail.contains("org acme")
            && roots.detail.contains("signed checkpoint says"),
        "{}",
        roots.detail
    );
    assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
    let recorded = drill_receipts(&dep, orgs[0]).await;
    assert_eq!(recorded.len(), 2, "a failed drill is recorded too");
    assert_eq!(recorded[1]["public"]["result"], "fail");
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'defendable_drill_%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "the drill database is dropped");

    // A backup file altered after the fact is refused before anything is restored.
    let dump_path = second.dir.join(&second.manifest.dump.file);
    let mut bytes = std::fs::read(&dump_path).expect("dump");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&dump_path, bytes).expect("write");
    let report = restore_drill(
        &dep,
        &DrillOptions {
            backup: second.dir.clone(),
            target: Target::Cluster(cluster.path().join("never")),
            sample: 1,
            report: None,
            allow_unsigned_manifest: false,
        },
    )
    .await
    .expect("drill runs");
    assert!(!report.ok);
    assert_eq!(report.checks.len(), 1, "{}", report.human());
    assert_eq!(report.checks[0].name, "backup digest");

    // Whoever alters the dump cannot make the manifest agree: the manifest is signed as a
    // whole (dump digest, counts, heads), and a drill pins the backup key.
    let altered = defendable_ops::sha256_file(&dump_path).expect("sha");
    let manifest_path = second.dir.join(manifest::MANIFEST);
    let text = std::fs::read_to_string(&manifest_path).expect("manifest");
    std::fs::write(
        &manifest_path,
        text.replace(&second.manifest.dump.sha256, &altered),
    )
    .expect("write");
    let drill = |dir: PathBuf, allow_unsigned_manifest: bool| {
        let (dep, cluster) = (&dep, &cluster);
        async move {
            restore_drill(
                dep,
                &DrillOptions {
                    backup: dir,
                    target: Target::Cluster(cluster.path().join("never")),
                    sample: 1,
                    report: None,
                    allow_unsigned_manifest,
                },
            )
            .await
        }
    };
    let refused = drill(second.dir.clone(), false)
        .await
        .expect_err("an edited manifest");
    assert!(
        refused.to_string().contains("changed after signing"),
        "{refused}"
    );
    // Signed again with a key of the attacker's own: no pinned key signed it.
    let (_, other) = defendable_ledger::SigningKey::generate().expect("key");
    let other = defendable_ledger::SigningKey::from_pkcs8(&other).expect("key");
    let mut edited = second.manifest.clone();
    edited.dump.sha256 = altered;
    edited.store(&second.dir, &other).expect("signed again");
    let refused = drill(second.dir.clone(), false)
        .await
        .expect_err("another key");
    assert!(
        refused.to_string().contains("pinned backup key"),
        "{refused}"
    );
    // A manifest without a signature (a backup made before they were signed) drills only when
    // the operator says so, and the drill receipt records it.
    std::fs::remove_file(first.dir.join(manifest::MANIFEST_NOTE)).expect("unsign");
    let refused = drill(first.dir.clone(), false).await.expect_err("unsigned");
    assert!(
        refused.to_string().contains("--allow-unsigned-manifest"),
        "{refused}"
    );
    let report = drill(first.dir.clone(), true).await.expect("drill runs");
    assert!(report.ok, "{}", report.human());
    let recorded = drill_receipts(&dep, orgs[0]).await;
    assert_eq!(
        recorded.last().expect("receipt")["public"]["manifest"],
        "unsigned, allowed by --allow-unsigned-manifest"
    );
    assert_eq!(recorded[0]["public"]["manifest"], "signed");
}

#[tokio::test]
async fn a_rotation_receipt_carries_the_fingerprint_and_old_use_count_never_the_secret() {
    let db = TestDb::new().await;
    let data = TempDir::new();
    let (dep, _) = open(&db, &data, &[]).await;
    let orgs = seed(&dep).await;
    let done = rotation_receipt(&dep, "RUNNER_TOKEN", &OldUses::Given(3))
        .await
        .expect("recorded");
    assert_eq!(done.old_uses, 3);
    assert_eq!(
        done.fingerprint,
        defendable_config::fingerprint(RUNNER_TOKEN)
    );
    let client = dep.pool.get().await.expect("client");
    let row = client
        .query_one(
            "SELECT canonical, private::text FROM receipts WHERE org_id = $1 AND kind = 'secret.rotation'",
            &[&orgs[0]],
        )
        .await
        .expect("receipt");
    let body: serde_json::Value = serde_json::from_slice(&row.get::<_, Vec<u8>>(0)).expect("json");
    assert_eq!(body["public"]["secret"], "RUNNER_TOKEN");
    assert_eq!(body["public"]["old_secret_uses_at_revocation"], 3);
    assert_eq!(body["public"]["new_fingerprint"], json!(done.fingerprint));
    let private: String = row.get(1);
    for text in [body.to_string(), private] {
        assert!(
            !text.contains(RUNNER_TOKEN),
            "the secret never enters a receipt"
        );
    }
    let audited: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'ops.secret_rotation' AND target = $1",
            &[&done.receipt_id],
        )
        .await
        .expect("audit")
        .get(0);
    assert_eq!(audited, 1);

    // Before the old secret is removed, and for a name that is no critical secret: refused.
    let (still, _) = open(
        &db,
        &data,
        &[(
            "RUNNER_TOKEN_PREVIOUS",
            "ops-old-runner-Zx1Cv3Bn5Mq7Wr9Ty2Ui4",
        )],
    )
    .await;
    let refused = rotation_receipt(&still, "RUNNER_TOKEN", &OldUses::Given(0)).await;
    assert!(
        matches!(refused, Err(OpsError::Setup(m)) if m.contains("RUNNER_TOKEN_PREVIOUS is still set"))
    );
    let unknown = rotation_receipt(&dep, "DATA_DIR", &OldUses::Given(0)).await;
    assert!(matches!(unknown, Err(OpsError::Setup(_))));
}

#[actix_web::test]
async fn the_packet_holds_live_evidence_and_a_manifest_of_digests() {
    let db = TestDb::new().await;
    let data = TempDir::new();
    let (dep, env) = open(&db, &data, &[]).await;
    seed(&dep).await;
    let out = TempDir::new();
    let b = backup(&dep, out.path()).await.expect("backup");
    restore_drill(
        &dep,
        &DrillOptions {
            backup: b.dir,
            target: Target::Server(
                defendable_ops::postgres::with_database(db.url(), "postgres").expect("url"),
            ),
            sample: 1,
            report: None,
            allow_unsigned_manifest: false,
        },
    )
    .await
    .expect("drill");
    // A later receipt in the operator chain: the bundle must carry the links up to it.
    rotation_receipt(&dep, "RUNNER_TOKEN", &OldUses::Given(0))
        .await
        .expect("rotation");

    let app = defendable_api::Application::build(
        dep.config.clone(),
        defendable_api::Dependencies {
            pool: db.another_pool(4),
            objects: Arc::clone(&dep.objects),
            presigner: None,
        },
    )
    .expect("server");
    let api = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());

    let dir = out.path().join("packet");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let built = packet(
        &dep,
        &env,
        &PacketOptions {
            out: dir.clone(),
            api,
            repo,
        },
    )
    .await
    .expect("packet");
    let names: Vec<&str> = built.files.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "openapi.json",
        "security-headers.txt",
        "env-inventory.json",
        "migrations.json",
        "restore-drill.json",
        "documents/ARCHITECTURE.md",
        "documents/docs/soc2-control-map.md",
        "edge/cloudflare/http_ratelimit.json",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        built
            .notes
            .iter()
            .all(|n| !n.contains("missing from the repository")),
        "{:?}",
        built.notes
    );
    let headers = std::fs::read_to_string(dir.join("security-headers.txt")).expect("headers");
    assert!(
        headers.contains("x-content-type-options: nosniff"),
        "{headers}"
    );
    let inventory = std::fs::read_to_string(dir.join("env-inventory.json")).expect("inventory");
    assert!(
        !inventory.contains(RUNNER_TOKEN),
        "secrets appear only as fingerprints"
    );
    assert!(inventory.contains(&defendable_config::fingerprint(RUNNER_TOKEN)));
    let migrations: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("migrations.json")).expect("m"))
            .expect("json");
    assert!(migrations["migrations"]
        .as_array()
        .expect("list")
        .iter()
        .all(|m| m["matches"] == true));
    let drill: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("restore-drill.json")).expect("d"))
            .expect("json");
    assert_eq!(drill["receipt"]["body"]["kind"], "restore_drill");
    assert_eq!(drill["chain_verification"]["valid"], true);
    // An auditor checks it offline with the CLI's verifier and the published vkeys: a v2
    // bundle, which carries no other receipt (the rotation recorded after the drill included).
    let keys: Vec<defendable_ledger::PublicKey> =
        serde_json::from_value(drill["published_keys"].clone()).expect("keys");
    let vkeys: Vec<&str> = keys.iter().map(|k| k.vkey.as_str()).collect();
    let vkeys = defendable_ledger::Vkeys::parse(&vkeys).expect("vkeys");
    let evidence = defendable_cli::parse_evidence(&drill.to_string()).expect("a proof bundle");
    assert!(
        matches!(evidence, defendable_cli::Evidence::Bundle(_)),
        "a v2 bundle"
    );
    let verified = defendable_cli::verify_v2(&evidence, &vkeys).expect("verifies offline");
    assert_eq!(verified.receipts, 1);
    assert_eq!(
        verified.head,
        drill["receipt"]["hash"].as_str().expect("hash")
    );
    assert_eq!(
        verified.checkpoint.expect("checkpoint").head.size,
        drill["chain_verification"]["tree_size"]
            .as_u64()
            .expect("size"),
        "proved against the whole current tree, rotation receipt included"
    );
    assert!(
        !drill.to_string().contains("secret.rotation"),
        "no other receipt's body"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("m"))
            .expect("json");
    for f in manifest["files"].as_array().expect("files") {
        let path = dir.join(f["path"].as_str().expect("path"));
        assert_eq!(
            f["sha256"].as_str(),
            Some(defendable_ops::sha256_file(&path).expect("sha").as_str())
        );
    }
}

/// The sweep on `dep`'s object store: within the grace period nothing; past it exactly the
/// unpublished uploads, listed on a dry run, deleted and audited with --apply.
async fn sweep_scenario(dep: &Deployment) {
    use defendable_ops::storage::{storage_sweep, SweepOptions};
    seed(dep).await; // publishes raw/census.csv
    for key in ["raw/never-published.csv", "raw/abandoned/part-1"] {
        dep.objects
            .put(
                &object_store::path::Path::from(key),
                b"stale".to_vec().into(),
            )
            .await
            .expect("put");
    }
    let events = || async {
        let client = dep.pool.get().await.expect("client");
        client
            .query_one(
                "SELECT count(*) FROM audit_events WHERE action = 'storage.sweep'",
                &[],
            )
            .await
            .expect("count")
            .get::<_, i64>(0)
    };
    let opts = |older_than: u64, apply: bool| SweepOptions {
        prefix: "raw/".into(),
        older_than: std::time::Duration::from_secs(older_than),
        apply,
    };

    let r = storage_sweep(dep, &opts(3600, true)).await.expect("sweep");
    assert_eq!(
        (r.listed, r.orphans.len()),
        (3, 0),
        "within the grace period"
    );
    let r = storage_sweep(dep, &opts(0, false)).await.expect("sweep");
    let keys: Vec<&str> = r.orphans.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["raw/abandoned/part-1", "raw/never-published.csv"]);
    assert_eq!(events().await, 0, "a dry run records nothing");
    assert!(dep
        .objects
        .head(&object_store::path::Path::from("raw/never-published.csv"))
        .await
        .is_ok());
    storage_sweep(dep, &opts(0, true)).await.expect("sweep");
    assert_eq!(events().await, 1);
    let r = storage_sweep(dep, &opts(0, false)).await.expect("sweep");
    assert_eq!(
        (r.listed, r.orphans.len()),
        (1, 0),
        "only the published object is left"
    );
    let mut bad = opts(0, true);
    bad.prefix = "/".into();
    assert!(
        storage_sweep(dep, &bad).await.is_err(),
        "a sweep needs a prefix"
    );
}

#[tokio::test]
async fn the_storage_sweep_deletes_only_unpublished_uploads_on_the_local_store() {
    let db = TestDb::new().await;
    let data = TempDir::new();
    let (dep, _) = open(&db, &data, &[]).await;
    sweep_scenario(&dep).await;
}

#[tokio::test]
async fn the_storage_sweep_deletes_only_unpublished_uploads_on_s3() {
    let s3 = defendable_testkit::s3::S3Server::start("datasets");
    let db = TestDb::new().await;
    let data = TempDir::new();
    let (mut dep, _) = open(&db, &data, &[]).await;
    dep.objects = Arc::new(s3.store("datasets"));
    sweep_scenario(&dep).await;
}
