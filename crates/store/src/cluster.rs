//! A private PostgreSQL cluster run from the system's PostgreSQL binaries, for zero-configuration
//! development and for test runs where no server is given.
//!
//! Layout under the cluster root (e.g. `DATA_DIR/pg`): `data/` is PGDATA, `port` and `password`
//! hold the connection details chosen at `initdb`. The cluster listens on 127.0.0.1 only, with
//! password authentication and no Unix socket. `initdb` refuses to run as root, so when the
//! process is root the cluster belongs to the unprivileged `postgres` user (or `nobody`).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::StoreError;

/// How the cluster trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Default PostgreSQL settings (fsync on): the development server.
    Durable,
    /// fsync off: throwaway test clusters, where a crash only loses test data.
    Throwaway,
}

/// A running private cluster.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<UnixUser>,
    port: u16,
    password: String,
}

#[derive(Debug, Clone)]
struct UnixUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl Cluster {
    /// Initializes the cluster under `root` if needed, starts it if it is not running, and
    /// returns it. Safe to call from several processes at once: a file lock serializes them.
    pub fn ensure(root: &Path, durability: Durability) -> Result<Cluster, StoreError> {
        fs::create_dir_all(root).map_err(|e| io_err(root, e))?;
        let root = root.canonicalize().map_err(|e| io_err(root, e))?;
        let lock_path = root.join("lock");
        let lock = fs::File::create(&lock_path).map_err(|e| io_err(&lock_path, e))?;
        lock.lock().map_err(|e| io_err(&lock_path, e))?;

        let bin_dir = find_bin_dir()?;
        let run_as = if is_root(&lock_path)? {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let data = root.join("data");
        if !data.join("PG_VERSION").exists() {
            init(&root, &bin_dir, run_as.as_ref(), durability)?;
        }
        let port: u16 = read_trimmed(&root.join("port"))?
            .parse()
            .map_err(|_| StoreError::Cluster(format!("{}/port is corrupt", root.display())))?;
        let password = read_trimmed(&root.join("password"))?;
        let mut cluster = Cluster {
            root,
            bin_dir,
            run_as,
            port,
            password,
        };
        if !cluster.is_running() {
            cluster.start_or_move()?;
        }
        drop(lock);
        Ok(cluster)
    }

    /// A connection URL for database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// The TCP port the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates database `name` (a plain identifier) unless it exists.
    pub async fn ensure_database(&self, name: &str) -> Result<(), StoreError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(StoreError::Invalid {
                what: "database name",
                why: "only lowercase letters and underscores".into(),
            });
        }
        let (client, conn) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await?;
        }
        Ok(())
    }

    /// Stops the cluster (fast shutdown: sessions are disconnected, data is flushed).
    pub fn stop(&self) -> Result<(), StoreError> {
        let data = self.root.join("data");
        let out = self.pg_ctl(&["-D", path_str(&data)?, "-m", "fast", "-w", "stop"])?;
        if !out.status.success() && self.is_running() {
            return Err(StoreError::Cluster(format!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    fn is_running(&self) -> bool {
        let data = self.root.join("data");
        path_str(&data)
            .ok()
            .and_then(|d| self.pg_ctl(&["-D", d, "status"]).ok())
            .is_some_and(|o| o.status.success())
    }

    /// Starts the cluster. Its port was picked when the cluster was made, and another process
    /// may hold it now: PostgreSQL then fails to bind and exits (`pg_ctl -w` waits for its own
    /// server, never for whatever else answers on the port), and the cluster moves to a fresh
    /// port, at most three times.
    fn start_or_move(&mut self) -> Result<(), StoreError> {
        for _ in 0..3 {
            match self.start() {
                Err(StoreError::Cluster(why)) if why.contains("Address already in use") => {
                    let port = free_port()?;
                    let conf = self.root.join("data").join("postgresql.conf");
                    let moved = format!(
                        "\n# Moved by Defendable: port {} was taken.\nport = {port}\n",
                        self.port
                    );
                    fs::OpenOptions::new()
                        .append(true)
                        .open(&conf)
                        .and_then(|mut f| f.write_all(moved.as_bytes()))
                        .map_err(|e| io_err(&conf, e))?;
                    write_private(&self.root.join("port"), &port.to_string())?;
                    self.port = port;
                }
                other => return other,
            }
        }
        self.start()
    }

    fn start(&self) -> Result<(), StoreError> {
        let data = self.root.join("data");
        let log = data.join("postgres.log");
        let out = self.pg_ctl(&[
            "-D",
            path_str(&data)?,
            "-l",
            path_str(&log)?,
            "-w",
            "-t",
            "60",
            "start",
        ])?;
        if !out.status.success() {
            let tail = fs::read_to_string(&log)
                .map(|s| {
                    s.lines()
                        .rev()
                        .take(10)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            return Err(StoreError::Cluster(format!(
                "could not start PostgreSQL in {}: {}\n{tail}",
                data.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, StoreError> {
        run(&self.bin_dir.join("pg_ctl"), args, self.run_as.as_ref())
    }
}

fn init(
    root: &Path,
    bin_dir: &Path,
    run_as: Option<&UnixUser>,
    durability: Durability,
) -> Result<(), StoreError> {
    let data = root.join("data");
    if data.exists() {
        // A half-initialized directory from an interrupted initdb: start over.
        fs::remove_dir_all(&data).map_err(|e| io_err(&data, e))?;
    }
    let password = random_hex();
    let port = free_port()?;
    // The password file must be readable by the cluster's user during initdb only.
    let pwfile = root.join("initdb-pwfile");
    write_private(&pwfile, &password)?;
    if let Some(u) = run_as {
        // PostgreSQL's user must be able to reach and own its directory.
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_err(root, e))?;
        fs::create_dir(&data).map_err(|e| io_err(&data, e))?;
        std::os::unix::fs::chown(&data, Some(u.uid), Some(u.gid)).map_err(|e| io_err(&data, e))?;
        std::os::unix::fs::chown(&pwfile, Some(u.uid), Some(u.gid))
            .map_err(|e| io_err(&pwfile, e))?;
        let probe = run(Path::new("test"), &["-w", path_str(&data)?], Some(u))?;
        if !probe.status.success() {
            let _ = fs::remove_file(&pwfile);
            return Err(StoreError::Cluster(format!(
                "user {} cannot reach {}: a parent directory is not traversable; \
                 set DATA_DIR to a directory under /var/lib or /tmp, or set DATABASE_URL",
                u.name,
                data.display()
            )));
        }
    }
    let pw_arg = format!("--pwfile={}", path_str(&pwfile)?);
    let out = run(
        &bin_dir.join("initdb"),
        &[
            "-D",
            path_str(&data)?,
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            &pw_arg,
            "-E",
            "UTF8",
            "--no-locale",
        ],
        run_as,
    );
    let _ = fs::remove_file(&pwfile);
    let out = out?;
    if !out.status.success() {
        return Err(StoreError::Cluster(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut settings = format!(
        "\n# Added by Defendable: loopback TCP only, no Unix socket.\n\
         listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n\
         max_connections = 300\nshared_buffers = 256MB\n\
         # No logical replication here; its launcher also delays DROP DATABASE by up to minutes\n\
         # (it answers the drop's ProcSignalBarrier only when it wakes).\n\
         max_logical_replication_workers = 0\n"
    );
    if durability == Durability::Throwaway {
        settings.push_str("fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n");
    }
    let conf = data.join("postgresql.conf");
    fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .and_then(|mut f| f.write_all(settings.as_bytes()))
        .map_err(|e| io_err(&conf, e))?;
    write_private(&root.join("port"), &port.to_string())?;
    write_private(&root.join("password"), &password)?;
    Ok(())
}

/// Finds `pg_ctl` and `initdb`: on PATH first, then the newest `/usr/lib/postgresql/*/bin`.
/// The path of a PostgreSQL client or server program (`pg_dump`, `pg_restore`, …) from the same
/// installation the private clusters use.
pub fn program(name: &str) -> Result<PathBuf, StoreError> {
    // initdb may be a symlink on PATH into the installation's own bin directory.
    let initdb = find_bin_dir()?.join("initdb");
    let bin = fs::canonicalize(&initdb).map_err(|e| io_err(&initdb, e))?;
    let path = bin.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(StoreError::Cluster(format!(
            "{} was not found beside initdb; install the PostgreSQL client programs",
            path.display()
        )))
    }
}

fn find_bin_dir() -> Result<PathBuf, StoreError> {
    let has_both = |d: &Path| d.join("pg_ctl").is_file() && d.join("initdb").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_both(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d).ok_or_else(|| {
        StoreError::Cluster(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or under \
             /usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: `apt-get install postgresql`) \
             or set DATABASE_URL to an existing server"
                .into(),
        )
    })
}

fn is_root(existing_file: &Path) -> Result<bool, StoreError> {
    // The lock file was just created by this process, so its owner is our effective uid.
    let meta = fs::metadata(existing_file).map_err(|e| io_err(existing_file, e))?;
    Ok(meta.uid() == 0)
}

fn unprivileged_user() -> Result<UnixUser, StoreError> {
    let passwd =
        fs::read_to_string("/etc/passwd").map_err(|e| io_err(Path::new("/etc/passwd"), e))?;
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 4 && f[0] == wanted {
                if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                    return Ok(UnixUser {
                        name: wanted.to_owned(),
                        uid,
                        gid,
                    });
                }
            }
        }
    }
    Err(StoreError::Cluster(
        "running as root and no unprivileged `postgres` or `nobody` user exists to own the cluster; \
         create one (`useradd postgres`) or set DATABASE_URL"
            .into(),
    ))
}

fn run(program: &Path, args: &[&str], run_as: Option<&UnixUser>) -> Result<Output, StoreError> {
    let mut cmd = match run_as {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", &u.name, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args)
        // pg_ctl's forked server inherits these handles; keep the server off our stdio.
        .stdin(std::process::Stdio::null())
        .env_remove("PGDATA")
        .env("LC_ALL", "C")
        .current_dir("/")
        .output()
        .map_err(|e| StoreError::Cluster(format!("cannot run {}: {e}", program.display())))
}

fn free_port() -> Result<u16, StoreError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| StoreError::Cluster(format!("no free loopback port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| StoreError::Cluster(e.to_string()))
}

fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn write_private(path: &Path, contents: &str) -> Result<(), StoreError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| io_err(path, e))
}

fn read_trimmed(path: &Path) -> Result<String, StoreError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| io_err(path, e))
}

fn path_str(p: &Path) -> Result<&str, StoreError> {
    p.to_str()
        .ok_or_else(|| StoreError::Cluster(format!("path {} is not UTF-8", p.display())))
}

fn io_err(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Cluster(format!("{}: {e}", path.display()))
}
