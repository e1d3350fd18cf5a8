//! Real Redis topologies for the scale tests, on free loopback ports: a 3-master Redis
//! Cluster ([`Cluster`]) and a master + replica + sentinel ([`Sentinel`]). Each server is a
//! child process of the test with its files in a temp dir; dropping the value kills every
//! process and removes the dir, also when the test panics. [`missing_tools`] says why the
//! tests must be skipped on a machine without `redis-server` / `redis-cli`.
//!
//! Admin commands go through `redis-cli` on the blocking pool, so a test can use them
//! while its server handles traffic on the same runtime. Every wait polls a condition
//! with a deadline.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the Redis tests cannot run here, if they cannot.
pub fn missing_tools() -> Option<String> {
    for tool in ["redis-server", "redis-cli"] {
        let ok = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// Skips the calling test (returns) when `redis-server` / `redis-cli` are missing.
macro_rules! require_redis_tools {
    () => {
        if let Some(why) = $crate::redis_servers::missing_tools() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}
pub(crate) use require_redis_tools;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Runs `redis-cli -p <port> <args…>` on the blocking pool; its output, or its error text.
pub async fn cli(port: u16, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(&args)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
            .trim()
            .to_owned(),
            Err(e) => format!("redis-cli failed: {e}"),
        }
    })
    .await
    .expect("redis-cli task")
}

/// Polls `check` every 50 ms until it yields a value, for at most `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A field of `INFO`-style text (`name:value` lines).
pub fn info_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// One `redis-server` process.
struct Server {
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

/// Processes and their directory; everything goes on drop.
struct Processes {
    dir: tempfile::TempDir,
    servers: Vec<Server>,
}

impl Processes {
    fn new() -> Processes {
        Processes {
            dir: tempfile::tempdir().expect("tempdir"),
            servers: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `redis-server` with `args(port)` on a free port and waits until it answers;
    /// picks another port when the chosen one was taken meanwhile.
    async fn start(&mut self, args: impl Fn(u16) -> Vec<String>) -> u16 {
        let mut port = 0;
        for _attempt in 0..5 {
            port = free_port();
            let mut server = Server {
                port,
                args: args(port),
                child: None,
            };
            if spawn(&mut server, self.dir.path()).await {
                self.servers.push(server);
                return port;
            }
        }
        let log = std::fs::read_to_string(self.path().join(format!("{port}.log")));
        panic!(
            "redis-server did not start; its last log:\n{}",
            log.unwrap_or_default()
        );
    }

    fn server(&mut self, port: u16) -> &mut Server {
        self.servers
            .iter_mut()
            .find(|s| s.port == port)
            .expect("a server of this topology")
    }

    /// SIGKILL: no shutdown, no goodbye to clients.
    fn kill(&mut self, port: u16) {
        if let Some(mut child) = self.server(port).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP / SIGCONT: a hung server (its kernel still accepts connections).
    fn signal(&mut self, port: u16, signal: &str) {
        let pid = self.server(port).child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pid}");
    }

    /// Starts a killed server again with the same arguments (and files).
    async fn restart(&mut self, port: u16) {
        let dir: PathBuf = self.dir.path().to_owned();
        let server = self.server(port);
        assert!(server.child.is_none(), "{port} is running");
        assert!(spawn(server, &dir).await, "{port} did not restart");
    }
}

/// Spawns `server` and waits until it answers (it, not another process that took the
/// port); false when it exited or never answered.
async fn spawn(server: &mut Server, dir: &Path) -> bool {
    let log = std::fs::File::create(dir.join(format!("{}.log", server.port))).expect("log");
    let mut child = Command::new("redis-server")
        .args(&server.args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        let info = cli(server.port, &["INFO", "server"]).await;
        if info_field(&info, "process_id") == Some(child.id().to_string().as_str()) {
            server.child = Some(child);
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

impl Drop for Processes {
    fn drop(&mut self) {
        for server in &mut self.servers {
            if let Some(mut child) = server.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// A Redis Cluster of three masters without replicas.
pub struct Cluster {
    pub ports: Vec<u16>,
    processes: Processes,
}

impl Cluster {
    /// Starts three cluster-enabled servers, joins them with `redis-cli --cluster create`
    /// and waits until every node reports `cluster_state:ok` and the full slot map.
    pub async fn start() -> Cluster {
        let mut processes = Processes::new();
        let dir = processes.path().display().to_string();
        let mut ports = Vec::new();
        for _ in 0..3 {
            let dir = dir.clone();
            let port = processes
                .start(move |p| {
                    // The bus port too (the default, port + 10000, may be taken).
                    let bus = free_port();
                    let mut args = strings(&["--bind", "127.0.0.1", "--port"]);
                    args.push(p.to_string());
                    args.extend(strings(&["--cluster-enabled", "yes", "--cluster-port"]));
                    args.push(bus.to_string());
                    args.push("--cluster-config-file".into());
                    args.push(format!("{dir}/nodes-{p}.conf"));
                    // A dead master is marked failed after 2 s (default 15 s).
                    args.extend(strings(&[
                        "--cluster-node-timeout",
                        "2000",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                    ]));
                    args.push(dir.clone());
                    args
                })
                .await;
            ports.push(port);
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let create = {
            let nodes = nodes.clone();
            tokio::task::spawn_blocking(move || {
                Command::new("redis-cli")
                    .arg("--cluster")
                    .arg("create")
                    .args(&nodes)
                    .args(["--cluster-replicas", "0", "--cluster-yes"])
                    .stdin(Stdio::null())
                    .output()
                    .expect("redis-cli --cluster create")
            })
            .await
            .expect("task")
        };
        assert!(
            create.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&create.stdout)
        );
        let cluster = Cluster { ports, processes };
        cluster.wait_healthy(&cluster.ports.clone()).await;
        cluster
    }

    /// `redis-cluster://` with every node, in the comma form.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis-cluster://{}", nodes.join(","))
    }

    /// Waits until each of `ports` reports `cluster_state:ok` with all 16384 slots.
    pub async fn wait_healthy(&self, ports: &[u16]) {
        for &port in ports {
            wait_for(
                &format!("cluster_state:ok on {port}"),
                Duration::from_secs(20),
                || async move {
                    let info = cli(port, &["CLUSTER", "INFO"]).await;
                    (info_field(&info, "cluster_state") == Some("ok")
                        && info_field(&info, "cluster_slots_ok") == Some("16384"))
                    .then_some(())
                },
            )
            .await;
        }
    }

    /// Waits until the surviving nodes see the cluster down (a master is unreachable).
    pub async fn wait_failed(&self, port: u16) {
        wait_for(
            &format!("cluster_state:fail on {port}"),
            Duration::from_secs(20),
            || async move {
                let info = cli(port, &["CLUSTER", "INFO"]).await;
                (info_field(&info, "cluster_state") == Some("fail")).then_some(())
            },
        )
        .await;
    }

    /// The port of the master serving `key`'s slot.
    pub async fn master_of(&self, key: &str) -> u16 {
        let port = self.ports[0];
        let slot: u16 = cli(port, &["CLUSTER", "KEYSLOT", key])
            .await
            .parse()
            .expect("slot");
        let nodes = cli(port, &["CLUSTER", "NODES"]).await;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                match (lo.parse::<u16>(), hi.parse::<u16>()) {
                    (Ok(lo), Ok(hi)) => (lo..=hi).contains(&slot),
                    _ => false,
                }
            });
            if owns {
                let addr = fields[1].split('@').next().expect("addr");
                return addr
                    .rsplit(':')
                    .next()
                    .expect("port")
                    .parse()
                    .expect("port");
            }
        }
        panic!("no master owns slot {slot}:\n{nodes}");
    }

    /// A command on the node serving the key (`redis-cli -c` follows redirects).
    pub async fn cli(&self, args: &[&str]) -> String {
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        cli(self.ports[0], &all).await
    }

    pub fn kill(&mut self, port: u16) {
        self.processes.kill(port);
    }

    /// Freezes a node (SIGSTOP): connections to it stay open and go silent.
    pub fn pause(&mut self, port: u16) {
        self.processes.signal(port, "-STOP");
    }

    pub fn resume(&mut self, port: u16) {
        self.processes.signal(port, "-CONT");
    }

    /// Restarts a killed node from its `nodes-<port>.conf`: it rejoins with its slots
    /// (and no data: persistence is off).
    pub async fn restart(&mut self, port: u16) {
        self.processes.restart(port).await;
    }

    pub fn dir(&self) -> &Path {
        self.processes.path()
    }
}

/// One master, one replica and one sentinel monitoring them as `mymaster`.
pub struct Sentinel {
    pub master: u16,
    pub replica: u16,
    pub sentinel: u16,
    processes: Processes,
}

impl Sentinel {
    pub async fn start() -> Sentinel {
        let mut processes = Processes::new();
        let data = |p: u16| {
            let mut args = strings(&["--bind", "127.0.0.1", "--port"]);
            args.push(p.to_string());
            args.extend(strings(&["--save", "", "--appendonly", "no"]));
            args
        };
        let master = processes.start(data).await;
        let replica = processes
            .start(move |p| {
                let mut args = data(p);
                args.extend(strings(&["--replicaof", "127.0.0.1"]));
                args.push(master.to_string());
                args
            })
            .await;
        wait_for(
            "the replica's link",
            Duration::from_secs(20),
            || async move {
                let info = cli(replica, &["INFO", "replication"]).await;
                (info_field(&info, "master_link_status") == Some("up")).then_some(())
            },
        )
        .await;
        let conf_dir = processes.path().to_owned();
        let sentinel = processes
            .start(move |p| {
                // The sentinel rewrites its file: one per attempt.
                let conf = conf_dir.join(format!("sentinel-{p}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "bind 127.0.0.1\nport {p}\n\
                         sentinel monitor mymaster 127.0.0.1 {master} 1\n\
                         sentinel down-after-milliseconds mymaster 3000\n\
                         sentinel failover-timeout mymaster 5000\n\
                         sentinel parallel-syncs mymaster 1\n"
                    ),
                )
                .expect("sentinel conf");
                vec![conf.display().to_string(), "--sentinel".into()]
            })
            .await;
        let set = Sentinel {
            master,
            replica,
            sentinel,
            processes,
        };
        // A failover needs the sentinel to know a healthy replica.
        wait_for(
            "the sentinel to know the replica",
            Duration::from_secs(20),
            || async move {
                let replicas = cli(sentinel, &["SENTINEL", "REPLICAS", "mymaster"]).await;
                (replicas.contains(&replica.to_string())
                    && !replicas.contains("s_down")
                    && !replicas.contains("disconnected"))
                .then_some(())
            },
        )
        .await;
        set
    }

    /// `redis-sentinel://` naming the sentinel, database 0 and the service.
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName=mymaster",
            self.sentinel
        )
    }

    /// The port the sentinel currently names as master.
    pub async fn current_master(&self) -> u16 {
        let out = cli(
            self.sentinel,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"],
        )
        .await;
        out.lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("sentinel answer: {out}"))
    }

    /// Asks the sentinel to fail the master over now (again while it answers that no
    /// replica is ready yet; one already under way will do).
    pub async fn failover(&self) {
        let sentinel = self.sentinel;
        wait_for(
            "SENTINEL FAILOVER accepted",
            Duration::from_secs(20),
            || async move {
                let out = cli(sentinel, &["SENTINEL", "FAILOVER", "mymaster"]).await;
                let started = out == "OK" || out.contains("INPROG");
                assert!(
                    started || out.contains("NOGOODSLAVE"),
                    "SENTINEL FAILOVER: {out}"
                );
                started.then_some(())
            },
        )
        .await;
    }

    pub fn kill(&mut self, port: u16) {
        self.processes.kill(port);
    }
}
