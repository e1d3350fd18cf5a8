//! Postgres for one run. [`Postgres`] is a private cluster: `initdb` into a temp dir and the
//! `postgres` server as a child process on a free loopback port (run as the `postgres`
//! account when we are root, as initdb requires), stoppable and restartable for fault
//! injection. [`SharedPostgres`] hands out fresh databases on the machine's
//! 127.0.0.1:5432 service, for the runs that are told to use it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use tokio::sync::Mutex;

use crate::process::Proc;

/// Server settings of a private cluster.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// `fsync=off` speeds up fault suites; the benchmark keeps the default (on).
    pub fsync: bool,
    pub max_connections: u32,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            fsync: false,
            max_connections: 200,
        }
    }
}

pub struct Postgres {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    options: PostgresOptions,
    proc: Mutex<Option<Proc>>,
    pid: AtomicU32,
    _temp: Option<tempfile::TempDir>,
}

/// The newest installed server's binaries (`PG_BIN` overrides).
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql: run tools/provision.sh")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let v = versions
        .last()
        .context("no Postgres server installed: run tools/provision.sh")?;
    Ok(PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
}

/// Runs `cmd` as the `postgres` account when we are root (initdb and postgres refuse root).
fn as_postgres(cmd: &mut Command) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres")?.context("no postgres account")?;
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    Ok(())
}

/// Hands `dir` to the `postgres` account when we are root.
fn give_to_postgres(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres")?.context("no postgres account")?;
        nix::unistd::chown(dir, Some(user.uid), Some(user.gid))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

impl Postgres {
    /// A fresh cluster in a temp dir, started.
    pub async fn start(options: PostgresOptions) -> anyhow::Result<Postgres> {
        let temp = tempfile::Builder::new().prefix("testkit-pg.").tempdir()?;
        let mut pg = Postgres::start_in(temp.path(), options).await?;
        pg._temp = Some(temp);
        Ok(pg)
    }

    /// A fresh cluster under `dir` (kept afterwards), started.
    pub async fn start_in(dir: &Path, options: PostgresOptions) -> anyhow::Result<Postgres> {
        std::fs::create_dir_all(dir.join("sock"))?;
        give_to_postgres(dir)?;
        give_to_postgres(&dir.join("sock"))?;
        let pg = Postgres {
            port: crate::ports::free_port()?,
            dir: dir.to_owned(),
            bin: bin_dir()?,
            options,
            proc: Mutex::new(None),
            pid: AtomicU32::new(0),
            _temp: None,
        };
        let mut initdb = Command::new(pg.bin.join("initdb"));
        initdb.arg("-D").arg(dir.join("data")).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        initdb.current_dir(dir);
        as_postgres(&mut initdb)?;
        let out = initdb.output().context("initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        pg.restart().await?;
        Ok(pg)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|p| *p != 0)
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub async fn restart(&self) -> anyhow::Result<()> {
        let mut guard = self.proc.lock().await;
        if guard
            .as_mut()
            .is_some_and(|p| matches!(p.try_wait(), Ok(None)))
        {
            bail!("postgres on {} is already running", self.port);
        }
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D").arg(self.dir.join("data"));
        cmd.args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.join("sock"));
        cmd.args(["-c", "listen_addresses=127.0.0.1"]);
        cmd.args([
            "-c",
            &format!("max_connections={}", self.options.max_connections),
        ]);
        if !self.options.fsync {
            cmd.args(["-c", "fsync=off"]);
        }
        cmd.current_dir(&self.dir);
        as_postgres(&mut cmd)?;
        let proc = Proc::spawn("postgres", cmd, &self.log_path())?;
        self.pid.store(proc.pid(), Ordering::SeqCst);
        *guard = Some(proc);
        drop(guard);
        crate::wait_until(
            "postgres",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || async { Ok(self.psql("postgres", "SELECT 1").await.is_ok()) },
        )
        .await
    }

    /// A fast shutdown (what `pg_ctl stop -m fast` sends: SIGINT), waiting for the exit.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let mut guard = self.proc.lock().await;
        if let Some(proc) = guard.as_mut() {
            let _ = proc.signal(Signal::SIGINT);
            if proc.wait_exit(Duration::from_secs(60)).await?.is_none() {
                bail!("postgres on {} did not stop", self.port);
            }
        }
        *guard = None;
        self.pid.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Creates database `name`; returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .await?;
        Ok(self.url(name))
    }

    /// Runs `sql` with `psql` in database `db`; its unaligned, tuples-only output.
    pub async fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        psql("127.0.0.1", self.port, db, sql).await
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // An immediate shutdown (SIGQUIT) lets the postmaster take its children and its
        // shared memory down; Proc's drop then kills whatever is left of the group.
        if let Some(proc) = self.proc.get_mut().as_mut()
            && proc.signal(Signal::SIGQUIT).is_ok()
        {
            for _ in 0..100 {
                if !matches!(proc.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `psql -qtAX` against host:port as the `postgres` role.
pub async fn psql(host: &str, port: u16, db: &str, sql: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("psql")
        .args([
            "-h",
            host,
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-qtAX", "-c", sql])
        .output()
        .await
        .context("psql")?;
    if !out.status.success() {
        bail!(
            "psql: {sql}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The machine's own Postgres on 127.0.0.1:5432 (trust auth, role `postgres`), which
/// `tools/provision.sh` starts: only for runs told to use it.
pub struct SharedPostgres;

/// A database created on the shared service, dropped with its handle.
pub struct SharedDatabase {
    pub name: String,
    pub url: String,
}

impl SharedPostgres {
    pub const PORT: u16 = 5432;

    /// A fresh database `<prefix>_<time>_<pid>`.
    pub async fn fresh_database(prefix: &str) -> anyhow::Result<SharedDatabase> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let name = format!("{prefix}_{secs}_{}", std::process::id());
        psql(
            "127.0.0.1",
            Self::PORT,
            "postgres",
            &format!("CREATE DATABASE {name}"),
        )
        .await
        .context("the shared Postgres on 127.0.0.1:5432 (tools/provision.sh starts it)")?;
        Ok(SharedDatabase {
            url: format!("postgres://postgres@127.0.0.1:{}/{name}", Self::PORT),
            name,
        })
    }
}

impl Drop for SharedDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                "5432",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qc",
            ])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}
