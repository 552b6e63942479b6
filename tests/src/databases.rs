//! Real database servers on 127.0.0.1 for the database sinks' tests: a
//! MariaDB (also standing in for MySQL) and a PostgreSQL, each with a fresh
//! data directory in a temporary directory, on a free port, with a database
//! [`DB_NAME`] owned by a password-protected non-superuser [`DB_USER`], the
//! account a sink connects as.
//!
//! The helpers are synchronous and drive the servers with their command-line
//! clients (`mariadb`, `psql`), so async tests may call them directly. Every
//! client call has a time limit, and a server is killed when its handle is
//! dropped, so a failing test never leaves one behind nor hangs.
//!
//! Prerequisites: `bash tests/databases/setup.sh` (run by `tests/setup.sh`)
//! installs MariaDB and PostgreSQL from apt when they are missing. The system
//! services those packages bring are never used.
//!
//! [`MariaDb::query`] and [`Postgres::query`] print values raw: a value
//! holding a tab or a newline cannot be told from a column or row break, and
//! SQL `NULL` prints as the text `NULL`, like a string `'NULL'` would. Tests
//! that need such values should select something unambiguous instead, e.g.
//! `HEX(col)`, `encode(col, 'hex')` or `col IS NULL`.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// The non-superuser the sink connects as; owns everything in [`DB_NAME`].
pub const DB_USER: &str = "sinkhost";
/// Password of [`DB_USER`]; required over TCP.
pub const DB_PASSWORD: &str = "sinkhost-test-password";
/// The database the sink writes into.
pub const DB_NAME: &str = "sinkhost";

/// Tries with a fresh port before giving up (another test may take a port
/// between the check and the server's bind).
const START_ATTEMPTS: usize = 3;
/// How long a server may take to accept connections after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a clean stop may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Time limit of one client call, including connecting.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Time limit of creating a data directory (`mariadb-install-db`, `initdb`).
const INIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Lines of a server log quoted in error messages.
const LOG_TAIL_LINES: usize = 30;

// ---------------------------------------------------------------------------
// MariaDB
// ---------------------------------------------------------------------------

/// A running MariaDB server on 127.0.0.1, killed on drop. Usable for
/// MySQL-compatible tests too (same wire protocol, `mysql://` URLs).
///
/// The server's default character set is `utf8mb4`. `root` has no password
/// and can only connect through the server's Unix socket
/// ([`MariaDb::execute_as_admin`]); [`DB_USER`] connects over TCP with
/// [`DB_PASSWORD`] and has `ALL` privileges on [`DB_NAME`] only.
pub struct MariaDb {
    child: Option<Child>,
    port: u16,
    /// The server's certificate; `None`: the server offers no TLS.
    tls: Option<TestTls>,
    /// Data directory, socket and logs; removed on drop.
    dir: tempfile::TempDir,
}

impl MariaDb {
    /// Creates a fresh data directory, starts the server on a free port and
    /// waits until it accepts connections, then creates database [`DB_NAME`]
    /// and user [`DB_USER`]`@'127.0.0.1'` and `@'localhost'` with
    /// [`DB_PASSWORD`] and `ALL` privileges on `DB_NAME.*`. Takes a few
    /// seconds, most of it `mariadb-install-db`. The server offers TLS with
    /// a certificate of a test CA ([`MariaDb::tls`]); clients may still
    /// connect in plaintext.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(true)
    }

    /// Like [`MariaDb::start`], with TLS off (for the tests that a grant
    /// requiring TLS never falls back to plaintext).
    pub fn start_without_tls() -> anyhow::Result<Self> {
        Self::start_with(false)
    }

    /// The test CA and certificate files, when the server offers TLS.
    pub fn tls(&self) -> Option<&TestTls> {
        self.tls.as_ref()
    }

    fn start_with(tls: bool) -> anyhow::Result<Self> {
        let binaries = MariaDbBinaries::find()?;
        let dir = tempfile::Builder::new()
            .prefix("sinkhost-mariadb-")
            .tempdir()
            .context("creating a temporary directory for MariaDB")?;
        std::fs::create_dir(dir.path().join("tmp")).context("creating MariaDB's tmpdir")?;
        let mut install = Command::new(&binaries.install_db);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ])
            .args(server_options(dir.path()));
        if is_root() {
            install.arg("--user=root");
        }
        run_logged(
            install,
            &dir.path().join("install.log"),
            INIT_TIMEOUT,
            "mariadb-install-db",
        )?;

        let tls = if tls {
            Some(TestTls::generate(dir.path())?)
        } else {
            None
        };
        let mut server = Self {
            child: None,
            port: 0,
            tls,
            dir,
        };
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            server.port = crate::free_port();
            match server
                .spawn(&binaries.server)
                .and_then(|()| server.wait_ready())
            {
                Ok(()) => break,
                Err(err) => {
                    server.kill();
                    failures.push(format!("{err:#}"));
                }
            }
        }
        if server.child.is_none() {
            bail!(
                "MariaDB did not start in {START_ATTEMPTS} attempts:\n{}",
                failures.join("\n---\n")
            );
        }
        server
            .root_sql(
                None,
                &format!(
                    "DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost';
                     FLUSH PRIVILEGES;
                     CREATE DATABASE `{DB_NAME}`;
                     CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';
                     CREATE USER '{DB_USER}'@'localhost' IDENTIFIED BY '{DB_PASSWORD}';
                     GRANT ALL ON `{DB_NAME}`.* TO '{DB_USER}'@'127.0.0.1';
                     GRANT ALL ON `{DB_NAME}`.* TO '{DB_USER}'@'localhost';"
                ),
            )
            .context("creating the test database and user in MariaDB")?;
        Ok(server)
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mysql://sinkhost:sinkhost-test-password@127.0.0.1:PORT/sinkhost`.
    pub fn url(&self) -> String {
        format!(
            "mysql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{}/{DB_NAME}",
            self.port
        )
    }

    /// `mysql://sinkhost@127.0.0.1:PORT/sinkhost`, for configs that pass the
    /// password separately.
    pub fn url_without_password(&self) -> String {
        format!("mysql://{DB_USER}@127.0.0.1:{}/{DB_NAME}", self.port)
    }

    /// Runs `sql` (one or more `;`-separated statements) as [`DB_USER`] over
    /// TCP in [`DB_NAME`]. The error includes the client's stderr.
    pub fn execute(&self, sql: &str) -> anyhow::Result<()> {
        self.query(sql).map(drop)
    }

    /// Runs `sql` as [`DB_USER`] over TCP in [`DB_NAME`] and returns the rows
    /// of every result set, each a list of column values as text
    /// (`mariadb -N -B --raw`): SQL `NULL` is the text `"NULL"`, other values
    /// are printed raw (see the module docs for what that cannot represent).
    pub fn query(&self, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        self.query_as(DB_USER, DB_PASSWORD, sql)
    }

    /// Like [`MariaDb::query`], as `user` with `password` over TCP (into
    /// [`DB_NAME`]), e.g. to check that a wrong password is refused.
    pub fn query_as(
        &self,
        user: &str,
        password: &str,
        sql: &str,
    ) -> anyhow::Result<Vec<Vec<String>>> {
        let mut command = self.client()?;
        command
            .args(["--protocol=TCP", "--host=127.0.0.1"])
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={user}"))
            .arg(DB_NAME)
            .env("MYSQL_PWD", password);
        let output = run_sql(command, sql, &format!("mariadb as {user} over TCP"))?;
        Ok(parse_rows(&output))
    }

    /// A command line (argv) that runs `sql` as [`DB_USER`] over TCP and
    /// prints the rows, for tools that take a command (`sinkhost certify`'s
    /// verifier).
    pub fn query_command(&self, sql: &str) -> anyhow::Result<Vec<String>> {
        let client = MariaDbBinaries::find()?.client;
        Ok(vec![
            "env".into(),
            format!("MYSQL_PWD={DB_PASSWORD}"),
            client.display().to_string(),
            "--no-defaults".into(),
            "--batch".into(),
            "--skip-column-names".into(),
            "--protocol=TCP".into(),
            "--host=127.0.0.1".into(),
            format!("--port={}", self.port),
            format!("--user={DB_USER}"),
            DB_NAME.into(),
            "-e".into(),
            sql.into(),
        ])
    }

    /// Runs `sql` as `root` (all privileges) through the Unix socket, in
    /// [`DB_NAME`]; for what [`DB_USER`] may not do (users, grants, global
    /// variables, killing connections). Returns the rows like
    /// [`MariaDb::query`].
    pub fn execute_as_admin(&self, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        self.root_sql(Some(DB_NAME), sql)
    }

    /// Stops the server cleanly (SIGTERM, waits for it to exit) and keeps its
    /// data for [`MariaDb::start_again`]. Kills it if it does not exit in
    /// time, and then returns an error.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "MariaDB did not stop within {STOP_TIMEOUT:?}; killed it:\n{}",
            self.log_tail()
        )
    }

    /// Starts the stopped server again on the same port with the same data and
    /// waits until it accepts connections.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!(
                "MariaDB on port {} is still running: stop it first",
                self.port
            );
        }
        let binaries = MariaDbBinaries::find()?;
        self.spawn(&binaries.server)?;
        self.wait_ready().inspect_err(|_| self.kill())
    }

    /// The server's output (all starts), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mariadbd.log")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mariadbd.sock")
    }

    fn log_tail(&self) -> String {
        tail(&self.log(), LOG_TAIL_LINES)
    }

    fn spawn(&mut self, server: &Path) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the MariaDB log")?;
        let mut command = Command::new(server);
        command
            .arg("--no-defaults")
            .arg(format!(
                "--datadir={}",
                self.dir.path().join("data").display()
            ))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("mariadbd.pid").display()
            ))
            .args([
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
            ])
            .args(server_options(self.dir.path()));
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--ssl-ca={}", tls.ca_file().display()))
                .arg(format!("--ssl-cert={}", tls.cert_file().display()))
                .arg(format!("--ssl-key={}", tls.key_file().display()));
        }
        if is_root() {
            command.arg("--user=root");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .current_dir(self.dir.path())
            .spawn()
            .with_context(|| format!("starting {}", server.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until `root` can run a query through the socket (the TCP port is
    /// listening before that).
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let Some(child) = self.child.as_mut() else {
                bail!("MariaDB is not running");
            };
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!(
                    "MariaDB on port {} exited ({status}):\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            if self.socket().exists() && self.root_sql(None, "SELECT 1").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "MariaDB on port {} was not ready within {READY_TIMEOUT:?}:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn root_sql(&self, database: Option<&str>, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        let mut command = self.client()?;
        command
            .arg("--protocol=SOCKET")
            .arg(format!("--socket={}", self.socket().display()))
            .arg("--user=root")
            .args(database);
        let output = run_sql(command, sql, "mariadb as root through the socket")?;
        Ok(parse_rows(&output))
    }

    /// The `mariadb` client with the options every call shares.
    fn client(&self) -> anyhow::Result<Command> {
        let mut command = Command::new(MariaDbBinaries::find()?.client);
        // --no-defaults must come first.
        command
            .arg("--no-defaults")
            .args([
                "--batch",
                "--skip-column-names",
                "--raw",
                "--default-character-set=utf8mb4",
            ])
            .args(["--connect-timeout=10"]);
        remove_client_env(&mut command);
        Ok(command)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Server options for `mariadb-install-db` and the server: a small redo log
/// and buffer pool, and a tmpdir of its own. A starting server deletes every
/// `#sql*` file in its tmpdir, so servers sharing /tmp destroy each other's
/// temporary tables (which made concurrent `mariadb-install-db` runs fail).
fn server_options(dir: &Path) -> Vec<String> {
    vec![
        "--innodb-log-file-size=8M".to_owned(),
        "--innodb-buffer-pool-size=32M".to_owned(),
        format!("--tmpdir={}", dir.join("tmp").display()),
    ]
}

struct MariaDbBinaries {
    install_db: PathBuf,
    server: PathBuf,
    client: PathBuf,
}

impl MariaDbBinaries {
    fn find() -> anyhow::Result<Self> {
        let hint = "MariaDB is not installed: run `bash tests/databases/setup.sh`";
        Ok(Self {
            install_db: find_program("mariadb-install-db", &["/usr/bin", "/usr/local/bin"])
                .context(hint)?,
            server: find_program("mariadbd", &["/usr/sbin", "/usr/local/sbin", "/usr/bin"])
                .context(hint)?,
            client: find_program("mariadb", &["/usr/bin", "/usr/local/bin"]).context(hint)?,
        })
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------

/// A running PostgreSQL server on 127.0.0.1, stopped at once on drop.
///
/// When the tests run as root, the server runs as the `postgres` user (it
/// refuses root). The superuser `postgres` can only connect through the
/// server's Unix socket ([`Postgres::execute_as_admin`]); [`DB_USER`] is a
/// plain login role that owns database [`DB_NAME`] and must give
/// [`DB_PASSWORD`] (SCRAM) over TCP. The database's encoding is UTF-8.
pub struct Postgres {
    port: u16,
    running: bool,
    bin: PathBuf,
    /// The server's certificate; `None`: the server offers no TLS.
    tls: Option<TestTls>,
    /// Data directory (`data/`), socket, logs; owned by the server's user,
    /// removed on drop.
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Creates a fresh cluster (`initdb`), starts it on a free port and waits
    /// until it accepts connections, then creates role [`DB_USER`] with
    /// [`DB_PASSWORD`] and database [`DB_NAME`] owned by it. The server
    /// offers TLS (`ssl = on`) with a certificate of a test CA
    /// ([`Postgres::tls`]); clients may still connect in plaintext.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(true)
    }

    /// Like [`Postgres::start`], with TLS off (for the tests that a grant
    /// requiring TLS never falls back to plaintext).
    pub fn start_without_tls() -> anyhow::Result<Self> {
        Self::start_with(false)
    }

    /// The test CA and certificate files, when the server offers TLS.
    pub fn tls(&self) -> Option<&TestTls> {
        self.tls.as_ref()
    }

    fn start_with(tls: bool) -> anyhow::Result<Self> {
        let bin = postgres_bin()?;
        let dir = postgres_tempdir()?;
        let tls = if tls {
            let tls = TestTls::generate(dir.path())?;
            tls.give_to_server_user()?;
            Some(tls)
        } else {
            None
        };
        let mut server = Self {
            port: 0,
            running: false,
            bin,
            tls,
            dir,
        };
        let mut initdb = server.as_server_user(&server.bin.join("initdb"));
        initdb
            .arg("--pgdata")
            .arg(server.data())
            .args([
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"]);
        run_logged(
            initdb,
            &server.dir.path().join("initdb.log"),
            INIT_TIMEOUT,
            "initdb",
        )?;
        // The superuser only through the socket; everyone over TCP from
        // loopback with a password.
        std::fs::write(
            server.data().join("pg_hba.conf"),
            "# Written by sinkhost's test harness (tests/src/databases.rs).\n\
             local  all  postgres                trust\n\
             host   all  all       127.0.0.1/32  scram-sha-256\n",
        )
        .context("writing pg_hba.conf")?;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(server.data().join("postgresql.conf"))
            .context("opening postgresql.conf")?;
        writeln!(conf, "\ninclude 'sinkhost.conf'").context("writing postgresql.conf")?;

        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            server.port = crate::free_port();
            let attempt = server.write_settings().and_then(|()| server.pg_ctl_start());
            match attempt {
                Ok(()) => break,
                Err(err) => {
                    server.kill();
                    failures.push(format!("{err:#}"));
                }
            }
        }
        if !server.running {
            bail!(
                "PostgreSQL did not start in {START_ATTEMPTS} attempts:\n{}",
                failures.join("\n---\n")
            );
        }
        server
            .admin_sql(
                "postgres",
                &format!(
                    "CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}';\n\
                     CREATE DATABASE {DB_NAME} OWNER {DB_USER};\n"
                ),
            )
            .context("creating the test role and database in PostgreSQL")?;
        Ok(server)
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://sinkhost:sinkhost-test-password@127.0.0.1:PORT/sinkhost`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{}/{DB_NAME}",
            self.port
        )
    }

    /// `postgres://sinkhost@127.0.0.1:PORT/sinkhost`, for configs that pass
    /// the password separately.
    pub fn url_without_password(&self) -> String {
        format!("postgres://{DB_USER}@127.0.0.1:{}/{DB_NAME}", self.port)
    }

    /// Runs `sql` (one or more `;`-separated statements, each in its own
    /// transaction unless the SQL says `BEGIN`) as [`DB_USER`] over TCP in
    /// [`DB_NAME`], stopping at the first error. The error includes the
    /// client's stderr.
    pub fn execute(&self, sql: &str) -> anyhow::Result<()> {
        self.query(sql).map(drop)
    }

    /// Runs `sql` as [`DB_USER`] over TCP in [`DB_NAME`] and returns the rows
    /// of every result, each a list of column values as text (`psql -At`,
    /// tab-separated): SQL `NULL` is the text `"NULL"`, booleans are `t` and
    /// `f`, other values are printed raw (see the module docs for what that
    /// cannot represent).
    pub fn query(&self, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        self.query_as(DB_USER, DB_PASSWORD, sql)
    }

    /// Like [`Postgres::query`], as `user` with `password` over TCP (into
    /// [`DB_NAME`]), e.g. to check that a wrong password is refused.
    pub fn query_as(
        &self,
        user: &str,
        password: &str,
        sql: &str,
    ) -> anyhow::Result<Vec<Vec<String>>> {
        let mut command = self.client();
        command
            .args(["--host=127.0.0.1", &format!("--port={}", self.port)])
            .args([
                &format!("--username={user}"),
                &format!("--dbname={DB_NAME}"),
            ])
            .env("PGPASSWORD", password);
        let output = run_sql(command, sql, &format!("psql as {user} over TCP"))?;
        Ok(parse_rows(&output))
    }

    /// A command line (argv) that runs `sql` as [`DB_USER`] over TCP and
    /// prints the rows, for tools that take a command (`sinkhost certify`'s
    /// verifier).
    pub fn query_command(&self, sql: &str) -> Vec<String> {
        let psql = self.bin.join("psql");
        let psql = if psql.exists() {
            psql
        } else {
            PathBuf::from("psql")
        };
        vec![
            "env".into(),
            format!("PGPASSWORD={DB_PASSWORD}"),
            psql.display().to_string(),
            "--no-psqlrc".into(),
            "--no-password".into(),
            "--no-align".into(),
            "--tuples-only".into(),
            "--host=127.0.0.1".into(),
            format!("--port={}", self.port),
            format!("--username={DB_USER}"),
            format!("--dbname={DB_NAME}"),
            format!("--command={sql}"),
        ]
    }

    /// Runs `sql` as the superuser `postgres` through the Unix socket, in
    /// [`DB_NAME`]; for what [`DB_USER`] may not do (roles, extensions,
    /// settings, terminating backends). Returns the rows like
    /// [`Postgres::query`].
    pub fn execute_as_admin(&self, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        self.admin_sql(DB_NAME, sql)
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`: SIGINT, waits for the
    /// shutdown checkpoint) and keeps its data for
    /// [`Postgres::start_again`].
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if !self.running {
            return Ok(());
        }
        let result = self.pg_ctl_stop("fast");
        if result.is_err() {
            self.kill();
        }
        self.running = false;
        result.with_context(|| format!("stopping PostgreSQL:\n{}", self.log_tail()))
    }

    /// Starts the stopped server again on the same port with the same data and
    /// waits until it accepts connections.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.running {
            bail!(
                "PostgreSQL on port {} is still running: stop it first",
                self.port
            );
        }
        self.pg_ctl_start().inspect_err(|_| self.kill())
    }

    /// The server's log (all starts), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn log_tail(&self) -> String {
        tail(&self.log(), LOG_TAIL_LINES)
    }

    /// The settings that depend on the port, included by postgresql.conf.
    fn write_settings(&self) -> anyhow::Result<()> {
        let mut settings = format!(
            "# Written by sinkhost's test harness (tests/src/databases.rs).\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{socket_dir}'\n\
             shared_buffers = 32MB\n\
             max_connections = 50\n",
            port = self.port,
            socket_dir = self.dir.path().display(),
        );
        if let Some(tls) = &self.tls {
            settings.push_str(&format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                tls.cert_file().display(),
                tls.key_file().display()
            ));
        }
        let path = self.data().join("sinkhost.conf");
        std::fs::write(&path, settings).context("writing sinkhost.conf")?;
        chown_to_server_user(&path)
    }

    /// `pg_ctl start -w`: returns once the server accepts connections, then
    /// checks with a query through the socket.
    fn pg_ctl_start(&mut self) -> anyhow::Result<()> {
        let mut command = self.as_server_user(&self.bin.join("pg_ctl"));
        command
            .arg("start")
            .arg("--pgdata")
            .arg(self.data())
            .arg("--log")
            .arg(self.log_path())
            .args([
                "--wait",
                &format!("--timeout={}", READY_TIMEOUT.as_secs()),
                "--silent",
            ]);
        // Counted as running from here, so that a failure below still stops
        // whatever did start.
        self.running = true;
        let started = run_logged(
            command,
            &self.dir.path().join("pg_ctl.log"),
            READY_TIMEOUT + Duration::from_secs(10),
            "pg_ctl start",
        );
        if let Err(err) = started {
            bail!(
                "PostgreSQL on port {}: {err:#}\nserver log:\n{}",
                self.port,
                self.log_tail()
            );
        }
        self.admin_sql("postgres", "SELECT 1").with_context(|| {
            format!(
                "PostgreSQL on port {} started but does not answer:\n{}",
                self.port,
                self.log_tail()
            )
        })?;
        Ok(())
    }

    fn pg_ctl_stop(&self, mode: &str) -> anyhow::Result<()> {
        let mut command = self.as_server_user(&self.bin.join("pg_ctl"));
        command.arg("stop").arg("--pgdata").arg(self.data()).args([
            &format!("--mode={mode}"),
            "--wait",
            &format!("--timeout={}", STOP_TIMEOUT.as_secs()),
            "--silent",
        ]);
        run_logged(
            command,
            &self.dir.path().join("pg_ctl.log"),
            STOP_TIMEOUT + Duration::from_secs(10),
            "pg_ctl stop",
        )
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), falling back to
    /// SIGKILL of the postmaster. Never blocks for long.
    fn kill(&mut self) {
        let pid_file = self.data().join("postmaster.pid");
        if !pid_file.exists() {
            self.running = false;
            return;
        }
        let mut command = self.as_server_user(&self.bin.join("pg_ctl"));
        command.arg("stop").arg("--pgdata").arg(self.data()).args([
            "--mode=immediate",
            "--wait",
            "--timeout=10",
            "--silent",
        ]);
        let stopped = run_logged(
            command,
            &self.dir.path().join("pg_ctl.log"),
            Duration::from_secs(15),
            "pg_ctl stop",
        );
        if stopped.is_err() {
            let pid = std::fs::read_to_string(&pid_file).ok().and_then(|text| {
                text.lines()
                    .next()
                    .and_then(|line| line.trim().parse::<libc::pid_t>().ok())
            });
            if let Some(pid) = pid.filter(|pid| *pid > 0) {
                // SAFETY: plain kill(2) on the postmaster's pid.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        self.running = false;
    }

    fn admin_sql(&self, database: &str, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        let mut command = self.client();
        command
            .arg(format!("--host={}", self.dir.path().display()))
            .arg(format!("--port={}", self.port))
            .args(["--username=postgres", &format!("--dbname={database}")]);
        let output = run_sql(command, sql, "psql as postgres through the socket")?;
        Ok(parse_rows(&output))
    }

    /// `psql` with the options every call shares: no psqlrc, no password
    /// prompt, stop at the first error, quiet, unaligned tuples only, tab
    /// between columns, `NULL` for null.
    fn client(&self) -> Command {
        let psql = self.bin.join("psql");
        let mut command = Command::new(if psql.exists() {
            psql
        } else {
            PathBuf::from("psql")
        });
        command
            .args([
                "--no-psqlrc",
                "--no-password",
                "--set=ON_ERROR_STOP=1",
                "--quiet",
            ])
            .args([
                "--no-align",
                "--tuples-only",
                "--field-separator=\t",
                "--pset=null=NULL",
            ])
            .args(["--file=-"]);
        remove_client_env(&mut command);
        command
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGCLIENTENCODING", "UTF8");
        command
    }

    /// `program` run as the server's user (`postgres` when we are root), in
    /// the server's directory.
    fn as_server_user(&self, program: &Path) -> Command {
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        remove_client_env(&mut command);
        command.current_dir(self.dir.path());
        command
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The newest `/usr/lib/postgresql/N/bin` (Debian's layout), else the
/// directory of `initdb` on PATH.
fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    find_program("initdb", &[])
        .ok()
        .and_then(|initdb| std::fs::canonicalize(initdb).ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .context("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run `bash tests/databases/setup.sh`")
}

/// A temporary directory the server's user owns. As root it is under /tmp,
/// which `postgres` can reach whatever `$TMPDIR` is.
fn postgres_tempdir() -> anyhow::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("sinkhost-pg-");
    let dir = if is_root() {
        builder.tempdir_in("/tmp")
    } else {
        builder.tempdir()
    }
    .context("creating a temporary directory for PostgreSQL")?;
    chown_to_server_user(dir.path())?;
    Ok(dir)
}

/// Gives `path` to `postgres` when we are root (no-op otherwise).
fn chown_to_server_user(path: &Path) -> anyhow::Result<()> {
    if !is_root() {
        return Ok(());
    }
    let (uid, gid) = user_ids("postgres")?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown postgres {}", path.display()))
}

/// Uid and gid of a local user.
fn user_ids(name: &str) -> anyhow::Result<(u32, u32)> {
    let c_name = std::ffi::CString::new(name)?;
    // SAFETY: getpwnam with a valid C string; the result is read at once and
    // not kept (the tests do not call getpwnam concurrently elsewhere; a race
    // would at worst return another entry's ids, which the chown would reveal).
    let entry = unsafe { libc::getpwnam(c_name.as_ptr()) };
    if entry.is_null() {
        bail!("no user '{name}' (installed with PostgreSQL): run `bash tests/databases/setup.sh`");
    }
    // SAFETY: non-null pointer returned by getpwnam.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok((uid, gid))
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

/// A test CA and a server certificate it signed, for `127.0.0.1` and
/// `localhost` (EC P-256, valid two days), made with the `openssl` command at
/// server start; plus an unrelated CA that signed nothing, for the tests
/// that a wrong CA is refused. Files: `ca.pem`, `other-ca.pem`,
/// `server.pem`, `server.key` in `dir`.
pub struct TestTls {
    dir: PathBuf,
}

impl TestTls {
    /// Creates the CA, the other CA and the server certificate in `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.join("tls");
        std::fs::create_dir_all(&dir).context("creating the TLS directory")?;
        let openssl = find_program("openssl", &["/usr/bin"])
            .context("the openssl command makes the test servers' certificates")?;
        let run = |args: &[&str]| -> anyhow::Result<()> {
            let output = Command::new(&openssl)
                .args(args)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .context("running openssl")?;
            if !output.status.success() {
                bail!(
                    "openssl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Ok(())
        };
        for (name, subject) in [
            ("ca", "/CN=sinkhost test CA"),
            ("other-ca", "/CN=another CA"),
        ] {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ])?;
        }
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .context("writing server.ext")?;
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ])?;
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ])?;
        Ok(Self { dir })
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A CA that signed nothing the servers use.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }

    fn cert_file(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// Hands the directory and files to the server's user (PostgreSQL
    /// refuses a key readable by others or owned by another user).
    fn give_to_server_user(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(self.key_file(), std::fs::Permissions::from_mode(0o600))
            .context("chmod server.key")?;
        chown_to_server_user(&self.dir)?;
        for file in ["ca.pem", "other-ca.pem", "server.pem", "server.key"] {
            chown_to_server_user(&self.dir.join(file))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `name` on PATH, else in one of `extra` directories (`/usr/sbin` is not on
/// every PATH).
fn find_program(name: &str, extra: &[&str]) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("`{name}` not found"))
}

/// Drops the environment variables the clients and servers read (`PG*`,
/// `MYSQL*`, `MARIADB*`) so the caller's environment cannot redirect them.
fn remove_client_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if let Some(key_str) = key.to_str() {
            if key_str.starts_with("PG")
                || key_str.starts_with("MYSQL")
                || key_str.starts_with("MARIADB")
            {
                command.env_remove(&key);
            }
        }
    }
}

/// What a finished command printed.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `command` with `input` on stdin, killing it after `timeout`.
fn run_with_timeout(
    mut command: Command,
    input: Option<&str>,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<Finished> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let writer = child.stdin.take().map(|mut stdin| {
        let input = input.unwrap_or_default().to_owned();
        // A client that exits early closes the pipe: that is not our error.
        std::thread::spawn(move || drop(stdin.write_all(input.as_bytes())))
    });
    let reader = |mut stream: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(Box::new(child.stdout.take().context("stdout pipe")?));
    let stderr = reader(Box::new(child.stderr.take().context("stderr pipe")?));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            bail!("{what} did not finish within {timeout:?}; killed it. stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    Ok(Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Runs a SQL client with `sql` on stdin; its stdout on success, else an
/// error with its stderr.
fn run_sql(command: Command, sql: &str, what: &str) -> anyhow::Result<String> {
    let finished = run_with_timeout(command, Some(sql), CLIENT_TIMEOUT, what)?;
    if !finished.status.success() {
        bail!(
            "{what} failed ({}): {}\nSQL: {}",
            finished.status,
            finished.stderr.trim(),
            abbreviate(sql)
        );
    }
    Ok(finished.stdout)
}

/// Runs a setup command (no stdin), appending its output to `log`; an error
/// quotes the end of the output.
fn run_logged(command: Command, log: &Path, timeout: Duration, what: &str) -> anyhow::Result<()> {
    let finished = run_with_timeout(command, None, timeout, what)?;
    let output = format!("{}{}", finished.stdout, finished.stderr);
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = file.write_all(output.as_bytes());
    }
    if !finished.status.success() {
        bail!(
            "{what} failed ({}):\n{}",
            finished.status,
            tail(&output, LOG_TAIL_LINES)
        );
    }
    Ok(())
}

/// Rows of tab-separated columns, one a line.
fn parse_rows(output: &str) -> Vec<Vec<String>> {
    if output.is_empty() {
        return Vec::new();
    }
    output
        .strip_suffix('\n')
        .unwrap_or(output)
        .split('\n')
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn abbreviate(sql: &str) -> String {
    const MAX: usize = 500;
    match sql.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &sql[..cut]),
        None => sql.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_split_on_newlines_and_tabs() {
        assert!(parse_rows("").is_empty());
        assert_eq!(parse_rows("\n"), vec![vec![String::new()]]);
        assert_eq!(
            parse_rows("1\ta\n2\tNULL\n"),
            vec![
                vec!["1".to_owned(), "a".to_owned()],
                vec!["2".to_owned(), "NULL".to_owned()]
            ]
        );
    }
}
