//! Test support: clusters of real `nats-server` processes on 127.0.0.1.
//!
//! This module is compiled for the crate's own tests and, for other crates' tests, under
//! the `testing` feature. It is test support and exempt from semver: anything in it may
//! change or go in any release. Applications do not use it.
//!
//! A [`Cluster`] owns a temporary directory with one sub-directory per node (the node's
//! configuration file, its JetStream store and its log file) and the `nats-server` child
//! processes. [`Cluster::start`] returns once every node accepts clients, reports itself
//! healthy and, for clusters of more than one node, the JetStream meta group has a leader
//! that every node knows and whose followers are all current: a stream with one replica
//! per node can be created right away. Dropping the cluster kills every process it
//! started and waits for it, and then removes the directory (unless a test failed: see
//! [`Cluster`]).
//!
//! Tests that need a cluster call [`cluster_or_skip`]: on a machine without `nats-server`
//! it says that the test skipped and returns `None`, unless the environment variable
//! named by [`REQUIRE_NATS_VAR`] asks for a failure instead.

use std::env;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The environment variable that turns a missing `nats-server` into a test failure.
///
/// When it is set to anything but the empty string or `0`, [`cluster_or_skip`] panics
/// instead of skipping. CI sets it where `nats-server` is installed, so that tests which
/// need a cluster cannot silently stop running.
pub const REQUIRE_NATS_VAR: &str = "FSWAL_REQUIRE_NATS";

/// The name of the server executable looked up on `PATH` and in [`FALLBACK_DIRS`].
pub const NATS_SERVER_BIN: &str = "nats-server";

/// The directories searched for [`NATS_SERVER_BIN`] after those on `PATH`.
///
/// Debian's package installs the server in `/usr/sbin`, which is not on every user's
/// `PATH`.
pub const FALLBACK_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/usr/local/bin"];

/// How many times [`Cluster::start`] tries to start a whole cluster.
///
/// Free ports are found by binding port 0 and letting the listener go, so another
/// process can take one before the server binds it. A start that fails because an
/// address is in use is retried with fresh ports, up to this many attempts in all.
pub const START_ATTEMPTS: usize = 3;

/// How long one attempt of [`Cluster::start`] waits for the whole cluster to be ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Cluster::restart`] waits for the restarted node to be ready.
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the waits for readiness sleep between two polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long a TCP connection to a node's client or monitoring port may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one read or write of a monitoring request may block.
pub const HTTP_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest monitoring response read, in bytes; longer responses are an error.
pub const MAX_HTTP_RESPONSE: u64 = 16 * 1024 * 1024;

/// How many lines of a node's log an error message quotes.
pub const LOG_TAIL_LINES: usize = 20;

/// How many bytes from the end of a node's log are read to find its last lines.
pub const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// How deeply nested the JSON of a monitoring response may be.
const MAX_JSON_DEPTH: usize = 128;

/// The text a node's log holds when it could not bind one of its ports.
const ADDRESS_IN_USE: &str = "address already in use";

/// Numbers the clusters of this process, so that each has its own cluster name.
static CLUSTER_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `args` and a newline to the process's standard error.
///
/// The test harness captures `eprintln!` but not writes to [`std::io::stderr`], so a
/// message written here shows even for a test that passes: this is how a test says that
/// it skipped. Errors writing are ignored.
pub fn say(args: fmt::Arguments<'_>) {
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_fmt(args);
    let _ = stderr.write_all(b"\n");
    let _ = stderr.flush();
}

/// Finds the `nats-server` executable.
///
/// The directories on `PATH` are searched first, then [`FALLBACK_DIRS`]. Returns `None`
/// when no executable file of that name exists in any of them.
pub fn nats_server_path() -> Option<PathBuf> {
    let on_path = env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(NATS_SERVER_BIN))
        .find(|candidate| is_executable(candidate))
}

/// Tells whether `path` is a file that may be executed.
fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = fs::metadata(path) else {
        return false;
    };
    if !metadata.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Tells whether the environment asks for a failure when `nats-server` is missing.
fn nats_required() -> bool {
    env::var_os(REQUIRE_NATS_VAR).is_some_and(|value| !value.is_empty() && value != "0")
}

/// Starts a cluster of `nodes` nodes, or says that the test skipped.
///
/// When `nats-server` cannot be found, this writes a line saying so to standard error and
/// returns `None`; the calling test returns early. When the variable named by
/// [`REQUIRE_NATS_VAR`] is set, it panics instead.
///
/// # Panics
///
/// Panics when `nats-server` is missing and required, and when it is present but the
/// cluster cannot start; the message holds the error of [`Cluster::start`].
pub fn cluster_or_skip(nodes: usize) -> Option<Cluster> {
    if nats_server_path().is_none() {
        if nats_required() {
            panic!(
                "nats-server not found on PATH or in {FALLBACK_DIRS:?}, and {REQUIRE_NATS_VAR} \
                 is set: install nats-server or unset {REQUIRE_NATS_VAR}"
            );
        }
        say(format_args!(
            "skipping: nats-server not found (set {REQUIRE_NATS_VAR}=1 to fail instead)"
        ));
        return None;
    }
    match Cluster::start(nodes) {
        Ok(cluster) => Some(cluster),
        Err(error) => panic!("cannot start a {nodes}-node nats-server cluster: {error}"),
    }
}

/// One server of a [`Cluster`].
#[derive(Debug)]
struct Node {
    /// The server's name, `n1` for the first node.
    name: String,
    /// The configuration file.
    config: PathBuf,
    /// The log file: the server's own log, and its standard output and error.
    log: PathBuf,
    /// The port clients connect to.
    client_port: u16,
    /// The monitoring (HTTP) port.
    monitor_port: u16,
    /// The running server, or `None` once killed.
    child: Option<Child>,
}

impl Node {
    /// The address clients connect to.
    fn client_addr(&self) -> SocketAddr {
        localhost(self.client_port)
    }

    /// Describes this node for an error message: its name and its log file.
    fn describe(&self) -> String {
        format!(
            "nats-server node {} (log {})",
            self.name,
            self.log.display()
        )
    }

    /// Builds the error for `what` went wrong with this node, quoting its log's end.
    fn error(&self, kind: io::ErrorKind, what: &str) -> io::Error {
        io::Error::new(
            kind,
            format!(
                "{}: {what}\n--- last lines of {} ---\n{}",
                self.describe(),
                self.log.display(),
                log_tail(&self.log)
            ),
        )
    }

    /// Starts the server with this node's configuration.
    fn spawn(&mut self, binary: &Path) -> io::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("{}: cannot open the log: {error}", self.describe()),
                )
            })?;
        let stderr = log.try_clone()?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&self.config)
            .arg("-l")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!(
                        "{}: cannot run {}: {error}",
                        self.describe(),
                        binary.display()
                    ),
                )
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Kills the server, if it runs, and waits for it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error means that the process has already exited; it is reaped below.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Checks that the server still runs; an exit is an error quoting the log.
    fn check_alive(&mut self) -> io::Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(io::Error::other(format!(
                "{}: the node is not running",
                self.describe()
            )));
        };
        match child.try_wait()? {
            None => Ok(()),
            Some(status) => {
                let _ = self.child.take();
                Err(self.error(
                    io::ErrorKind::Other,
                    &format!("the server exited during start-up ({status})"),
                ))
            }
        }
    }

    /// Checks that the node accepts clients and that its `/healthz` says `ok`.
    ///
    /// Returns why not, for the error should the wait time out.
    fn healthy(&self) -> Result<(), String> {
        TcpStream::connect_timeout(&self.client_addr(), CONNECT_TIMEOUT)
            .map_err(|error| format!("the client port {} refuses: {error}", self.client_port))?;
        let (status, body) = http_get(self.monitor_port, "/healthz")
            .map_err(|error| format!("GET /healthz failed: {error}"))?;
        let ok = status == 200
            && parse_json(&body)
                .as_ref()
                .and_then(|json| json.get("status"))
                .and_then(Json::as_str)
                == Some("ok");
        if ok {
            Ok(())
        } else {
            Err(format!("GET /healthz answers {status}: {}", body.trim()))
        }
    }

    /// Reads this node's view of the JetStream meta group from `/jsz`.
    fn meta_view(&self) -> Result<MetaView, String> {
        let (status, body) = http_get(self.monitor_port, "/jsz")
            .map_err(|error| format!("GET /jsz failed: {error}"))?;
        if status != 200 {
            return Err(format!("GET /jsz answers {status}: {}", body.trim()));
        }
        let json = parse_json(&body).ok_or_else(|| "GET /jsz answers no JSON".to_owned())?;
        let meta = json
            .get("meta_cluster")
            .ok_or_else(|| "GET /jsz shows no meta_cluster".to_owned())?;
        let leader = meta
            .get("leader")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned();
        let size = meta.get("cluster_size").and_then(Json::as_u64);
        let replicas = meta
            .get("replicas")
            .and_then(Json::as_array)
            .unwrap_or_default();
        let current_replicas = replicas
            .iter()
            .filter(|replica| replica.get("current").and_then(Json::as_bool) == Some(true))
            .count();
        Ok(MetaView {
            leader,
            size,
            replicas: replicas.len(),
            current_replicas,
        })
    }
}

/// What one node's `/jsz` says about the JetStream meta group.
struct MetaView {
    /// The meta leader's server name; empty while there is none.
    leader: String,
    /// The size of the meta group.
    size: Option<u64>,
    /// How many followers the node lists (only the leader lists them).
    replicas: usize,
    /// How many of those followers are current.
    current_replicas: usize,
}

/// A cluster of `nats-server` processes with JetStream on 127.0.0.1.
///
/// Nodes are numbered from 0; node `i` has the server name `n{i+1}`. Every node has its
/// own client port, cluster port and monitoring port, chosen free at start and kept for
/// the cluster's lifetime, so a restarted node comes back at the same address with the
/// same store. Dropping the cluster kills every node and waits for it, then removes its
/// directory; while the thread panics (a test failed) the directory is kept instead, and
/// its path written to standard error, so that the nodes' logs can be read. A start that
/// fails keeps its directory too, since its error names a log file.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, in order.
    nodes: Vec<Node>,
    /// The server executable.
    binary: PathBuf,
    /// The directory holding one sub-directory per node; removed after the nodes die.
    dir: tempfile::TempDir,
}

/// Why one attempt to start a cluster failed.
struct StartFailure {
    /// The error to report.
    error: io::Error,
    /// Whether a node could not bind a port, so that fresh ports may succeed.
    port_taken: bool,
}

impl From<io::Error> for StartFailure {
    fn from(error: io::Error) -> Self {
        StartFailure {
            error,
            port_taken: false,
        }
    }
}

impl Cluster {
    /// Starts a cluster of `nodes` servers and waits until it is ready.
    ///
    /// Clusters of 1, 3 or 5 nodes are the intended sizes; a one-node cluster has no
    /// cluster block. Ready means that every node accepts clients and answers `ok` on
    /// `/healthz`, and for more than one node that every node names the same JetStream
    /// meta leader, of a meta group of `nodes` peers, and that the leader sees all its
    /// followers current. Each attempt waits at most [`START_TIMEOUT`]; a node that could
    /// not bind a port makes another attempt with fresh ports, up to [`START_ATTEMPTS`].
    ///
    /// # Errors
    ///
    /// Fails when `nodes` is 0, when `nats-server` cannot be found, when the directory or
    /// configuration cannot be written, and when a node exits or the cluster is not ready
    /// in time; the message names the node and its log file and quotes the log's last
    /// lines.
    pub fn start(nodes: usize) -> io::Result<Cluster> {
        if nodes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a cluster needs at least one node",
            ));
        }
        let binary = nats_server_path().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{NATS_SERVER_BIN} not found on PATH or in {FALLBACK_DIRS:?}"),
            )
        })?;
        let mut attempt = 1;
        loop {
            match Self::start_once(&binary, nodes, attempt == START_ATTEMPTS) {
                Ok(cluster) => return Ok(cluster),
                Err(failure) if failure.port_taken && attempt < START_ATTEMPTS => attempt += 1,
                Err(failure) if attempt == 1 => return Err(failure.error),
                Err(failure) => {
                    return Err(io::Error::new(
                        failure.error.kind(),
                        format!(
                            "attempt {attempt} of {START_ATTEMPTS} (the earlier ones found a \
                             port taken): {}",
                            failure.error
                        ),
                    ));
                }
            }
        }
    }

    /// One attempt of [`Cluster::start`], with fresh ports.
    ///
    /// The directory is kept when the attempt fails and is the last, or is not retried.
    fn start_once(
        binary: &Path,
        count: usize,
        final_attempt: bool,
    ) -> Result<Cluster, StartFailure> {
        let dir = tempfile::Builder::new().prefix("fswal-nats-").tempdir()?;
        let ports = free_ports(3 * count)?;
        let client_ports = &ports[..count];
        let cluster_ports = &ports[count..2 * count];
        let monitor_ports = &ports[2 * count..];
        let cluster_name = format!(
            "fswal-test-{}-{}",
            std::process::id(),
            CLUSTER_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut nodes = Vec::with_capacity(count);
        for index in 0..count {
            let name = format!("n{}", index + 1);
            let node_dir = dir.path().join(&name);
            fs::create_dir(&node_dir)?;
            let store = node_dir.join("js");
            let mut config = format!(
                "server_name: {name}\n\
                 listen: 127.0.0.1:{client}\n\
                 http: 127.0.0.1:{monitor}\n\
                 jetstream {{ store_dir: {store}, max_memory_store: 256MB, max_file_store: 4GB }}\n",
                client = client_ports[index],
                monitor = monitor_ports[index],
                store = quote(&store.to_string_lossy()),
            );
            if count > 1 {
                let routes = cluster_ports
                    .iter()
                    .enumerate()
                    .filter(|&(other, _)| other != index)
                    .map(|(_, port)| format!("nats-route://127.0.0.1:{port}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                config.push_str(&format!(
                    "cluster {{ name: {cluster_name}, listen: 127.0.0.1:{port}, routes: [{routes}] }}\n",
                    port = cluster_ports[index],
                ));
            }
            let config_path = node_dir.join("nats.conf");
            fs::write(&config_path, config)?;
            nodes.push(Node {
                name,
                config: config_path,
                log: node_dir.join("nats.log"),
                client_port: client_ports[index],
                monitor_port: monitor_ports[index],
                child: None,
            });
        }
        // From here on, dropping `cluster` on an error kills what has started.
        let mut cluster = Cluster {
            nodes,
            binary: binary.to_owned(),
            dir,
        };
        let result = cluster.spawn_all().and_then(|()| cluster.wait_ready());
        match result {
            Ok(()) => Ok(cluster),
            Err(failure) => {
                if final_attempt || !failure.port_taken {
                    // The error names a log file: it has to outlive the cluster.
                    cluster.keep_dir();
                }
                Err(failure)
            }
        }
    }

    /// Starts every node.
    fn spawn_all(&mut self) -> Result<(), StartFailure> {
        for node in &mut self.nodes {
            node.spawn(&self.binary)?;
        }
        Ok(())
    }

    /// Keeps the cluster's directory, with the nodes' logs, when the cluster goes.
    fn keep_dir(&mut self) {
        self.dir.disable_cleanup(true);
        say(format_args!(
            "kept the nats-server cluster directory {} (the nodes' logs and stores)",
            self.dir.path().display()
        ));
    }

    /// Waits, at most [`START_TIMEOUT`], until the whole cluster is ready.
    fn wait_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            for node in &mut self.nodes {
                if let Err(error) = node.check_alive() {
                    let port_taken = error.to_string().contains(ADDRESS_IN_USE);
                    return Err(StartFailure { error, port_taken });
                }
            }
            let reason = match self.not_ready() {
                None => return Ok(()),
                Some(reason) => reason,
            };
            if Instant::now() >= deadline {
                let (index, what) = reason;
                let error = self.nodes[index].error(
                    io::ErrorKind::TimedOut,
                    &format!("the cluster is not ready after {START_TIMEOUT:?}: {what}"),
                );
                return Err(error.into());
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Returns a node that is not ready yet and why, or `None` when the cluster is ready.
    fn not_ready(&self) -> Option<(usize, String)> {
        for (index, node) in self.nodes.iter().enumerate() {
            if let Err(why) = node.healthy() {
                return Some((index, why));
            }
        }
        if self.nodes.len() == 1 {
            return None;
        }
        let expected = self.nodes.len() as u64;
        let mut leader: Option<String> = None;
        for (index, node) in self.nodes.iter().enumerate() {
            let view = match node.meta_view() {
                Ok(view) => view,
                Err(why) => return Some((index, why)),
            };
            if view.leader.is_empty() {
                return Some((index, "no JetStream meta leader yet".to_owned()));
            }
            if view.size != Some(expected) {
                return Some((
                    index,
                    format!("the meta group has {:?} peers, not {expected}", view.size),
                ));
            }
            match &leader {
                None => leader = Some(view.leader.clone()),
                Some(first) if *first != view.leader => {
                    return Some((
                        index,
                        format!("the meta leader is {}, not {first}", view.leader),
                    ));
                }
                Some(_) => {}
            }
            if view.leader == node.name
                && (view.replicas + 1 != self.nodes.len() || view.current_replicas != view.replicas)
            {
                return Some((
                    index,
                    format!(
                        "the meta leader sees {} of {} followers current",
                        view.current_replicas,
                        self.nodes.len() - 1
                    ),
                ));
            }
        }
        let leader = leader.unwrap_or_default();
        if self.node_named(&leader).is_none() {
            return Some((0, format!("the meta leader {leader} is not a node")));
        }
        None
    }

    /// The index of the node with the server name `name`.
    fn node_named(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// The number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The server name of `node`: `n1` for node 0.
    ///
    /// # Panics
    ///
    /// Panics when `node` is not below [`Cluster::nodes`].
    pub fn server_name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    /// The client URL of `node`, such as `nats://127.0.0.1:4222`.
    ///
    /// # Panics
    ///
    /// Panics when `node` is not below [`Cluster::nodes`].
    pub fn url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[node].client_port)
    }

    /// The client URLs of all nodes, in order.
    ///
    /// `async_nats::connect` takes this list as it is (but not the comma-separated
    /// string of [`Cluster::urls`]).
    pub fn url_list(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|node| self.url(node)).collect()
    }

    /// The client URLs of all nodes separated by commas, as a `--nats URLS` flag takes
    /// them.
    pub fn urls(&self) -> String {
        self.url_list().join(",")
    }

    /// The log file of `node`, for a test to quote when it fails.
    ///
    /// # Panics
    ///
    /// Panics when `node` is not below [`Cluster::nodes`].
    pub fn log_path(&self, node: usize) -> &Path {
        &self.nodes[node].log
    }

    /// The directory holding one sub-directory per node.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Tells whether `node` runs: it has not been killed since it last started.
    ///
    /// # Panics
    ///
    /// Panics when `node` is not below [`Cluster::nodes`].
    pub fn is_running(&self, node: usize) -> bool {
        self.nodes[node].child.is_some()
    }

    /// Kills `node` with SIGKILL and waits for it; a node that does not run is left so.
    ///
    /// # Panics
    ///
    /// Panics when `node` is not below [`Cluster::nodes`].
    pub fn kill(&mut self, node: usize) {
        self.nodes[node].kill();
    }

    /// Starts a killed `node` again, with the same configuration, ports and store.
    ///
    /// Returns once the node accepts clients and answers `ok` on `/healthz` (which, in a
    /// cluster, means that it is current with the JetStream meta leader), waiting at most
    /// [`RESTART_TIMEOUT`]. A node that does not get ready in time is killed again.
    ///
    /// # Errors
    ///
    /// Fails when the node runs, when it cannot be started, and when it exits or is not
    /// ready in time; the message names the node and its log file and quotes the log's
    /// last lines.
    ///
    /// # Panics
    ///
    /// Panics when `node` is not below [`Cluster::nodes`].
    pub fn restart(&mut self, node: usize) -> io::Result<()> {
        let binary = self.binary.clone();
        let target = &mut self.nodes[node];
        if target.child.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: the node is running", target.describe()),
            ));
        }
        target.spawn(&binary)?;
        let deadline = Instant::now() + RESTART_TIMEOUT;
        loop {
            target.check_alive()?;
            let why = match target.healthy() {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                target.kill();
                return Err(target.error(
                    io::ErrorKind::TimedOut,
                    &format!("not ready {RESTART_TIMEOUT:?} after a restart: {why}"),
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The body of the monitoring endpoint `path` of `node`, such as `/jsz?streams=true`.
    ///
    /// # Errors
    ///
    /// Fails when the request fails and when the answer is not `200 OK`; the message then
    /// holds the status and the body.
    ///
    /// # Panics
    ///
    /// Panics when `node` is not below [`Cluster::nodes`].
    pub fn monitor_get(&self, node: usize, path: &str) -> io::Result<String> {
        let target = &self.nodes[node];
        let (status, body) = http_get(target.monitor_port, path).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("GET {path} on {}: {error}", target.describe()),
            )
        })?;
        if status == 200 {
            Ok(body)
        } else {
            Err(io::Error::other(format!(
                "GET {path} on {} answers {status}: {}",
                target.describe(),
                body.trim()
            )))
        }
    }

    /// The node that leads the JetStream meta group, or `None` when unknown.
    ///
    /// The leader is the running node whose `/jsz` names itself as the meta leader; for a
    /// one-node cluster that is node 0 while it runs.
    pub fn meta_leader(&self) -> Option<usize> {
        if self.nodes.len() == 1 {
            return self.nodes[0].child.is_some().then_some(0);
        }
        self.sole_claimant(|node| {
            node.meta_view()
                .ok()
                .is_some_and(|view| view.leader == node.name)
        })
    }

    /// The node that leads the JetStream stream `stream`, or `None` when unknown.
    ///
    /// The leader is the running node whose `/jsz?accounts=true&streams=true` names
    /// itself as the stream's leader, in any account. A node that was killed is not
    /// asked, so a leader that died is never returned, even before the survivors elect
    /// another. `None` also when no node, or more than one, claims the stream.
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        self.sole_claimant(|node| {
            stream_leader_in(node, stream).is_some_and(|leader| leader == node.name)
        })
    }

    /// The only running node for which `claims` holds, or `None`.
    fn sole_claimant(&self, claims: impl Fn(&Node) -> bool) -> Option<usize> {
        let mut claimants = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.child.is_some() && claims(node))
            .map(|(index, _)| index);
        let first = claimants.next()?;
        claimants.next().is_none().then_some(first)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        if thread::panicking() {
            self.keep_dir();
        }
    }
}

/// The leader `node` names for the stream `stream`, in any account.
fn stream_leader_in(node: &Node, stream: &str) -> Option<String> {
    let (status, body) = http_get(node.monitor_port, "/jsz?accounts=true&streams=true").ok()?;
    if status != 200 {
        return None;
    }
    let json = parse_json(&body)?;
    let accounts = json.get("account_details")?.as_array()?;
    accounts
        .iter()
        .filter_map(|account| account.get("stream_detail").and_then(Json::as_array))
        .flatten()
        .find(|detail| detail.get("name").and_then(Json::as_str) == Some(stream))
        .and_then(|detail| detail.get("cluster")?.get("leader")?.as_str())
        .filter(|leader| !leader.is_empty())
        .map(str::to_owned)
}

/// The address `127.0.0.1:port`.
fn localhost(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Finds `count` distinct free ports on 127.0.0.1.
///
/// Every listener is held until all ports are found, so that the ports differ; they are
/// all released on return.
fn free_ports(count: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind(localhost(0)))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|addr| addr.port()))
        .collect()
}

/// Quotes `text` as a string of the server's configuration language.
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// The last [`LOG_TAIL_LINES`] lines of the log at `path`, or why they cannot be read.
fn log_tail(path: &Path) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines = text.lines().collect::<Vec<_>>();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            if lines.is_empty() {
                "(the log is empty)".to_owned()
            } else {
                lines[start..].join("\n")
            }
        }
        Err(error) => format!("(cannot read the log: {error})"),
    }
}

/// Sends `GET path` over HTTP/1.0 to the monitoring port `port`; returns the status and
/// the body.
fn http_get(port: u16, path: &str) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&localhost(port), CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_IO_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_IO_TIMEOUT))?;
    stream.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )?;
    let mut response = Vec::new();
    (&mut stream)
        .take(MAX_HTTP_RESPONSE + 1)
        .read_to_end(&mut response)?;
    if response.len() as u64 > MAX_HTTP_RESPONSE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the response to GET {path} exceeds {MAX_HTTP_RESPONSE} bytes"),
        ));
    }
    let response = String::from_utf8_lossy(&response);
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a malformed HTTP response to GET {path}"),
        )
    };
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(invalid)?;
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(invalid)?;
    Ok((status, body.to_owned()))
}

/// A JSON value, as much of it as the monitoring responses need.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written.
    Number(String),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, its members in order.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The member `key` of an object.
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    /// The text of a string.
    fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    /// The elements of an array.
    fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(elements) => Some(elements),
            _ => None,
        }
    }

    /// The value of a boolean.
    fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(value) => Some(*value),
            _ => None,
        }
    }

    /// The value of a number written as a non-negative integer.
    fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(text) => text.parse().ok(),
            _ => None,
        }
    }
}

/// Parses `text` as one JSON value with nothing but white space around it.
fn parse_json(text: &str) -> Option<Json> {
    let mut parser = JsonParser {
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = parser.value(0)?;
    parser.skip_space();
    (parser.at == parser.bytes.len()).then_some(value)
}

/// A recursive-descent JSON parser over bytes.
struct JsonParser<'a> {
    /// The text.
    bytes: &'a [u8],
    /// The position of the next byte.
    at: usize,
}

impl JsonParser<'_> {
    /// The next byte, without consuming it.
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Consumes the next byte.
    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    /// Skips white space.
    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Consumes `word` exactly.
    fn keyword(&mut self, word: &str) -> Option<()> {
        let end = self.at.checked_add(word.len())?;
        (self.bytes.get(self.at..end)? == word.as_bytes()).then(|| self.at = end)
    }

    /// Parses a value nested `depth` deep.
    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_JSON_DEPTH {
            return None;
        }
        self.skip_space();
        match self.peek()? {
            b'n' => self.keyword("null").map(|()| Json::Null),
            b't' => self.keyword("true").map(|()| Json::Bool(true)),
            b'f' => self.keyword("false").map(|()| Json::Bool(false)),
            b'"' => self.string().map(Json::String),
            b'[' => {
                self.at += 1;
                let mut elements = Vec::new();
                self.skip_space();
                if self.peek()? == b']' {
                    self.at += 1;
                    return Some(Json::Array(elements));
                }
                loop {
                    elements.push(self.value(depth + 1)?);
                    self.skip_space();
                    match self.next()? {
                        b',' => {}
                        b']' => return Some(Json::Array(elements)),
                        _ => return None,
                    }
                }
            }
            b'{' => {
                self.at += 1;
                let mut members = Vec::new();
                self.skip_space();
                if self.peek()? == b'}' {
                    self.at += 1;
                    return Some(Json::Object(members));
                }
                loop {
                    self.skip_space();
                    let key = self.string()?;
                    self.skip_space();
                    if self.next()? != b':' {
                        return None;
                    }
                    members.push((key, self.value(depth + 1)?));
                    self.skip_space();
                    match self.next()? {
                        b',' => {}
                        b'}' => return Some(Json::Object(members)),
                        _ => return None,
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = self.at;
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.at += 1;
                }
                let text = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
                text.parse::<f64>().ok()?;
                Some(Json::Number(text.to_owned()))
            }
            _ => None,
        }
    }

    /// Parses a string, the next byte being its opening quote.
    fn string(&mut self) -> Option<String> {
        if self.next()? != b'"' {
            return None;
        }
        let mut text = Vec::new();
        loop {
            match self.next()? {
                b'"' => return String::from_utf8(text).ok(),
                b'\\' => {
                    let c = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    let mut buf = [0; 4];
                    text.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                byte if byte < 0x20 => return None,
                byte => text.push(byte),
            }
        }
    }

    /// Parses the four hex digits after `\u`, and a low surrogate's escape after a high
    /// surrogate.
    fn unicode_escape(&mut self) -> Option<char> {
        let high = self.hex4()?;
        if (0xD800..0xDC00).contains(&high) {
            self.keyword("\\u")?;
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return None;
            }
            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
        } else {
            char::from_u32(high)
        }
    }

    /// Parses four hex digits.
    fn hex4(&mut self) -> Option<u32> {
        let end = self.at.checked_add(4)?;
        let digits = std::str::from_utf8(self.bytes.get(self.at..end)?).ok()?;
        let value = u32::from_str_radix(digits, 16).ok()?;
        self.at = end;
        Some(value)
    }
}

/// The segment files (`FS.<index>.wal`) of the directory `dir`, by name, with their
/// bytes: what tests compare to say that a replica is byte-identical to its primary.
pub fn wal_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_owned();
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream;

    /// How long a test waits for a stream to have a leader, or a new one after a kill.
    const LEADER_ELECTION_TIMEOUT: Duration = Duration::from_secs(15);

    /// A runtime for the async client.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    }

    /// Polls `probe` every [`POLL_INTERVAL`] until it returns a value or `timeout` passes.
    fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = probe() {
                return Some(value);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Connects to `cluster`, creates the stream `name` with `replicas` replicas on the
    /// subject `name.>` right away, and publishes one message; returns its sequence.
    async fn create_and_publish(cluster: &Cluster, name: &str, replicas: usize) -> u64 {
        let client = async_nats::connect(cluster.urls().split(',').collect::<Vec<_>>())
            .await
            .expect("connect to the cluster");
        let js = jetstream::new(client);
        js.create_stream(jetstream::stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{name}.>")],
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .expect("create the stream right after start");
        publish(&js, name).await
    }

    /// Publishes one message to the stream `name`; returns its sequence.
    async fn publish(js: &jetstream::Context, name: &str) -> u64 {
        js.publish(format!("{name}.a"), bytes::Bytes::from_static(b"hello"))
            .await
            .expect("publish")
            .await
            .expect("the publish ack")
            .sequence
    }

    #[test]
    fn a_three_node_cluster_elects_a_new_stream_leader_when_the_leader_dies() {
        let Some(mut cluster) = cluster_or_skip(3) else {
            return;
        };
        assert_eq!(cluster.nodes(), 3);
        assert_eq!(cluster.url_list().len(), 3);
        assert_eq!(cluster.urls().split(',').count(), 3);
        for node in 0..3 {
            assert!(cluster.url(node).starts_with("nats://127.0.0.1:"));
            let health = cluster.monitor_get(node, "/healthz").expect("/healthz");
            assert!(health.contains("\"ok\""), "node {node}: {health}");
        }
        assert!(cluster.meta_leader().is_some());

        let rt = runtime();
        assert_eq!(rt.block_on(create_and_publish(&cluster, "T3", 3)), 1);

        let leader = poll(LEADER_ELECTION_TIMEOUT, || cluster.stream_leader("T3"))
            .expect("the stream has a leader");
        cluster.kill(leader);
        assert!(!cluster.is_running(leader));
        let next = poll(LEADER_ELECTION_TIMEOUT, || cluster.stream_leader("T3"))
            .expect("a new leader within the election timeout");
        assert_ne!(next, leader);

        cluster.restart(leader).expect("restart the killed node");
        assert!(cluster.is_running(leader));
        let restarted = cluster.monitor_get(leader, "/healthz").expect("/healthz");
        assert!(restarted.contains("\"ok\""), "{restarted}");
        let sequence = rt.block_on(async {
            let client = async_nats::connect(cluster.url_list())
                .await
                .expect("connect again");
            publish(&jetstream::new(client), "T3").await
        });
        assert_eq!(sequence, 2);
        assert!(
            cluster.restart(leader).is_err(),
            "a running node cannot restart"
        );
    }

    #[test]
    fn a_one_node_cluster_keeps_its_store_across_a_restart() {
        let Some(mut cluster) = cluster_or_skip(1) else {
            return;
        };
        assert_eq!(cluster.urls(), cluster.url(0));
        let rt = runtime();
        assert_eq!(rt.block_on(create_and_publish(&cluster, "T1", 1)), 1);
        assert_eq!(cluster.stream_leader("T1"), Some(0));
        assert_eq!(cluster.stream_leader("absent"), None);
        assert!(cluster.monitor_get(0, "/no-such-endpoint").is_err());

        cluster.kill(0);
        assert_eq!(cluster.stream_leader("T1"), None);
        assert!(cluster.monitor_get(0, "/healthz").is_err());
        cluster.restart(0).expect("restart the node");
        let sequence = rt.block_on(async {
            let client = async_nats::connect(cluster.url(0))
                .await
                .expect("connect again");
            publish(&jetstream::new(client), "T1").await
        });
        assert_eq!(sequence, 2, "the restarted node kept its store");
        let dir = cluster.dir().to_owned();
        assert!(dir.join("n1").join("nats.conf").is_file());
        drop(cluster);
        assert!(!dir.exists(), "the directory goes with the cluster");
    }

    #[test]
    fn a_cluster_needs_a_node() {
        assert_eq!(
            Cluster::start(0).map(|_| ()).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn json_parses_what_the_monitoring_endpoints_answer() {
        let json = parse_json(
            r#" {"a": [1, -2.5e3, true, false, null], "s": "x\"\u00e9\ud83d\ude00\n",
                "o": {"leader": "n2", "size": 3}, "e": {}, "z": []} "#,
        )
        .expect("valid JSON");
        assert_eq!(
            json.get("a").and_then(Json::as_array).map(<[_]>::len),
            Some(5)
        );
        assert_eq!(json.get("s").and_then(Json::as_str), Some("x\"é😀\n"));
        let o = json.get("o").expect("o");
        assert_eq!(o.get("leader").and_then(Json::as_str), Some("n2"));
        assert_eq!(o.get("size").and_then(Json::as_u64), Some(3));
        assert_eq!(json.get("missing"), None);
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "\"\\x\"",
            "1 2",
            "tru",
            "\"\u{1}\"",
        ] {
            assert_eq!(parse_json(bad), None, "{bad:?}");
        }
        let deep = "[".repeat(MAX_JSON_DEPTH + 2) + &"]".repeat(MAX_JSON_DEPTH + 2);
        assert_eq!(parse_json(&deep), None);
    }

    #[test]
    fn config_strings_are_quoted() {
        assert_eq!(quote(r#"/tmp/a "b"\c"#), r#""/tmp/a \"b\"\\c""#);
    }
}
