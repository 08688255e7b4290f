//! A private PostgreSQL server for a test: Debian's binaries (`scripts/setup` installs the
//! `postgresql` package), a fresh cluster in a temporary folder owned by the `postgres` user,
//! listening on 127.0.0.1 at a free port with trust authentication. Stopped and removed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::unistd::{User, chown};

use crate::harness::{Result, run, wait_for};

/// A running PostgreSQL server.
pub struct PgServer {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    child: Child,
}

/// The newest installed PostgreSQL's `bin` folder.
fn pg_bin() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL is not installed: run scripts/setup (it installs `postgresql`)")?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no PostgreSQL initdb under /usr/lib/postgresql".into())
}

/// Runs `program ARGS` as the `postgres` user; fails with its output.
fn as_postgres(program: &Path, args: &[&str]) -> Result {
    let out = run(
        Command::new("runuser").arg("-u").arg("postgres").arg("--").arg(program).args(args),
        Duration::from_secs(120),
    )?;
    if !out.status.success() {
        return Err(format!(
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

impl PgServer {
    /// Creates a cluster and starts it. `durable`: keep fsync on (benchmarks); tests turn it off.
    pub fn start(durable: bool) -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let bin = pg_bin()?;
        let user = User::from_name("postgres")?.ok_or("there is no postgres user")?;
        let dir = std::env::temp_dir().join(format!(
            "tau-pg-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        chown(&dir, Some(user.uid), Some(user.gid))?;
        let data = dir.join("data");
        let data_arg = data.to_string_lossy().to_string();
        as_postgres(
            &bin.join("initdb"),
            &["-D", &data_arg, "-A", "trust", "-U", "postgres", "--no-sync"],
        )?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let fsync = if durable { "fsync=on" } else { "fsync=off" };
        let child = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("postgres"))
            .args(["-D", &data_arg, "-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&dir)
            .args(["-c", fsync, "-c", "max_connections=50"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("postgres.log"))?)
            .spawn()?;
        let server = Self { dir, port, bin, child };
        let ready = server.bin.join("pg_isready");
        let port_arg = port.to_string();
        wait_for(Duration::from_secs(60), "PostgreSQL to accept connections", || {
            let out = run(
                Command::new(&ready).args(["-h", "127.0.0.1", "-p", &port_arg, "-U", "postgres"]),
                Duration::from_secs(10),
            )?;
            Ok(out.status.success().then_some(()))
        })
        .map_err(|e| format!("{e}; log: {}", server.log()))?;
        Ok(server)
    }

    /// Creates database `name` and returns its URL.
    pub fn database(&self, name: &str) -> Result<String> {
        as_postgres(
            &self.bin.join("createdb"),
            &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", name],
        )?;
        Ok(format!("postgres://postgres@127.0.0.1:{}/{name}", self.port))
    }

    /// `psql -tA -c SQL` on database `db`: its output, trimmed.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = run(self.psql_command(db).args(["-tA", "-c", sql]), Duration::from_secs(30))?;
        if !out.status.success() {
            return Err(format!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A psql session on `db` that has run `sql` and stays open (holding what it took, such as
    /// a lock in an open transaction) until the returned session is ended.
    pub fn session(&self, db: &str, sql: &str) -> Result<PgSession> {
        let mut child = self
            .psql_command(db)
            .args(["-q", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.as_mut().ok_or("psql has no stdin")?;
        std::io::Write::write_all(stdin, format!("{sql}\n").as_bytes())?;
        Ok(PgSession { child })
    }

    fn psql_command(&self, db: &str) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", db]);
        command
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }
}

/// An open psql session (see [`PgServer::session`]).
pub struct PgSession {
    child: Child,
}

impl PgSession {
    /// Runs `sql` in the session, then ends it and waits for psql to exit.
    pub fn end_with(mut self, sql: &str) -> Result {
        let mut stdin = self.child.stdin.take().ok_or("psql has no stdin")?;
        std::io::Write::write_all(&mut stdin, format!("{sql}\n").as_bytes())?;
        drop(stdin);
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("psql session ended with {status}").into());
        }
        Ok(())
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown (runuser passes the signal on).
        crate::harness::signal(self.child.id(), nix::sys::signal::Signal::SIGINT);
        if wait_for(Duration::from_secs(20), "PostgreSQL to stop", || {
            Ok(self.child.try_wait()?.map(drop))
        })
        .is_err()
        {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
