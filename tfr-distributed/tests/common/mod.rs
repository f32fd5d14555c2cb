//! Real `tfr-server` processes on loopback ports chosen free at run time. The guard kills
//! every child when dropped (also when a test fails); every wait has a deadline.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tfr_distributed::ClusterSpec;

/// How long a server may take to start listening.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// Ports free right now (bound then released; the servers bind them next). They are drawn at
/// random below the kernel's ephemeral range, so the outgoing connections of concurrent tests
/// cannot take them in between; a server that still loses its port is restarted on a new set
/// (see [`Cluster::start_with`]).
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::hash::{BuildHasher, RandomState};
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = if ephemeral_low > 12_000 {
        (10_000u16, ephemeral_low)
    } else {
        (ephemeral_low, u16::MAX)
    };
    let random = RandomState::new();
    let mut listeners: Vec<TcpListener> = Vec::with_capacity(n);
    for attempt in 0u64.. {
        if listeners.len() == n {
            break;
        }
        assert!(attempt < 10_000, "no {n} free ports in {low}..{high}");
        let port = low + (random.hash_one(attempt) % u64::from(high - low)) as u16;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(l);
        }
    }
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

pub struct Task {
    pub job: String,
    pub index: u32,
    pub address: String,
    pub child: Option<Child>,
    /// The network namespace the task runs in (bound to `address` there), if any.
    pub netns: Option<String>,
}

/// A cluster of running `tfr-server` processes; kills them all on drop.
pub struct Cluster {
    pub spec: ClusterSpec,
    /// Extra arguments and environment of every server.
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    pub spec_path: std::path::PathBuf,
    pub tasks: Vec<Task>,
    _dir: TempDir,
    /// Dropped after the tasks (fields drop in order): the namespaces they ran in.
    _net: Option<Hosts>,
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "tfr-dist-{tag}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Cluster {
    /// Starts one server per task of `jobs` (name, number of tasks).
    pub fn start(jobs: &[(&str, usize)]) -> Cluster {
        Self::start_with(jobs, &[], &[])
    }

    /// Starts one server per task, each with `args` and environment `envs`. A server that
    /// exits before it listens (its port was taken after [`free_ports`] released it) makes the
    /// whole cluster start again on new ports: every task reads the same spec.
    pub fn start_with(jobs: &[(&str, usize)], args: &[&str], envs: &[(&str, &str)]) -> Cluster {
        let total = jobs.iter().map(|j| j.1).sum();
        let mut last_error = String::new();
        for _ in 0..4 {
            let mut ports = free_ports(total).into_iter();
            let map = job_map(jobs, || {
                format!("127.0.0.1:{}", ports.next().expect("port"))
            });
            let mut cluster = Cluster::new(map, vec![None; total], "cluster");
            cluster.args = args.iter().map(|a| a.to_string()).collect();
            cluster.envs = envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            match (0..total).try_for_each(|k| cluster.try_launch(k)) {
                Ok(()) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("the cluster did not start: {last_error}")
    }

    /// A cluster of tasks not started yet, the `k`-th (in job order) in namespace `netns[k]`.
    fn new(map: BTreeMap<String, Vec<String>>, netns: Vec<Option<String>>, tag: &str) -> Cluster {
        let dir = TempDir::new(tag);
        let spec_path = dir.0.join("cluster.json");
        std::fs::write(&spec_path, serde_json::to_string(&map).expect("json")).expect("write");
        let spec = ClusterSpec::new(map.clone()).expect("valid spec");
        let mut netns = netns.into_iter();
        let tasks = map
            .iter()
            .flat_map(|(job, addrs)| {
                addrs
                    .iter()
                    .enumerate()
                    .map(move |(i, address)| (job, i, address))
            })
            .map(|(job, i, address)| Task {
                job: job.clone(),
                index: i as u32,
                address: address.clone(),
                child: None,
                netns: netns.next().flatten(),
            })
            .collect();
        Cluster {
            spec,
            args: Vec::new(),
            envs: Vec::new(),
            spec_path,
            tasks,
            _dir: dir,
            _net: None,
        }
    }

    /// Restarts task `k` on its own address (e.g. after killing it) and waits until it listens;
    /// retried while the old process's port is being released.
    pub fn launch(&mut self, k: usize) {
        let mut last_error = String::new();
        for _ in 0..5 {
            match self.try_launch(k) {
                Ok(()) => return,
                Err(e) => last_error = e,
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("{last_error}")
    }

    /// Starts task `k` and waits until it listens; `Err` if it exits first.
    fn try_launch(&mut self, k: usize) -> Result<(), String> {
        let t = &mut self.tasks[k];
        let server = env!("CARGO_BIN_EXE_tfr-server");
        let mut command = match &t.netns {
            Some(ns) => {
                // `ip netns exec` execs the server: the child is the server itself.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, server, "--bind", &t.address]);
                c
            }
            None => Command::new(server),
        };
        let mut child = command
            .args(["--cluster", self.spec_path.to_str().expect("utf-8 path")])
            .args(["--job", &t.job, "--task", &t.index.to_string()])
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tfr-server");
        let stdout = child.stdout.take().expect("stdout");
        t.child = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("listening on") => {
                    assert!(line.contains(&t.address), "{line} (expected {})", t.address);
                    return Ok(());
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Some(mut c) = t.child.take() {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    return Err(format!(
                        "tfr-server /job:{}/task:{} exited before listening on {}",
                        t.job, t.index, t.address
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "tfr-server /job:{}/task:{} did not start within {START_DEADLINE:?}",
                    t.job, t.index
                ),
            }
        }
    }

    pub fn task(&mut self, job: &str, index: u32) -> &mut Task {
        self.tasks
            .iter_mut()
            .find(|t| t.job == job && t.index == index)
            .expect("no such task")
    }

    /// Sends `signal` (e.g. `KILL`, `TERM`) to a task's process.
    pub fn signal(&mut self, job: &str, index: u32, signal: &str) {
        let pid = self.task(job, index).child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Waits (bounded) for a task's process to exit; returns its exit status.
    pub fn wait_exit(
        &mut self,
        job: &str,
        index: u32,
        within: Duration,
    ) -> std::process::ExitStatus {
        let child = self.task(job, index).child.as_mut().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the task did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &mut self.tasks {
            if let Some(mut c) = t.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Job name -> task addresses, each address from `next_address` in job order.
fn job_map(
    jobs: &[(&str, usize)],
    mut next_address: impl FnMut() -> String,
) -> BTreeMap<String, Vec<String>> {
    jobs.iter()
        .map(|(job, n)| (job.to_string(), (0..*n).map(|_| next_address()).collect()))
        .collect()
}

/// A task's worker status, asked directly (bounded by the deadline).
pub fn worker_status(address: &str) -> tfr_distributed::proto::StatusResponse {
    use tfr_distributed::proto::{worker_client::WorkerClient, Empty};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            let mut c = WorkerClient::connect(format!("http://{address}"))
                .await
                .expect("connect");
            c.status(Empty {}).await.expect("status").into_inner()
        })
        .await
        .expect("status within 10 s")
    })
}

/// Runs `f` on a thread and fails the test if it does not finish within `limit`.
pub fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?} (hang)"))
}

/// Separate "hosts" on one machine: one network namespace per task, all joined by veth pairs
/// to a bridge in a namespace of their own, and the test process (the client) on that bridge
/// too. Addresses are private (10.x.y.0/24) and traffic never leaves the machine. Removed on
/// drop (deleting a namespace deletes its interfaces).
pub struct Hosts {
    namespaces: Vec<String>,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Hosts {
    /// `n` namespaced hosts; returns their addresses (without port), or why it cannot
    /// (not root, no `ip`, no namespaces in this container).
    pub fn new(n: usize) -> Result<(Hosts, Vec<String>), String> {
        // Root: the effective uid as `id -u` prints it.
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| format!("id -u: {e}"))?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not root (network namespaces need CAP_NET_ADMIN)".into());
        }
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let pid = std::process::id();
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A subnet and names per test process and cluster, so concurrent tests do not collide.
        let id = pid.wrapping_mul(31).wrapping_add(k);
        let subnet = format!("10.{}.{}", 100 + (id >> 8) % 100, id % 256);
        let tag = format!("{:x}", id % 0xffff);
        let hub = format!("tfrhub{tag}");
        let mut hosts = Hosts {
            namespaces: Vec::new(),
        };
        ip(&["netns", "add", &hub])?;
        hosts.namespaces.push(hub.clone());
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        // The client's leg, in this process's namespace.
        let (client, client_peer) = (format!("tfc{tag}"), format!("tfcp{tag}"));
        ip(&[
            "link",
            "add",
            &client,
            "type",
            "veth",
            "peer",
            "name",
            &client_peer,
        ])?;
        ip(&["link", "set", &client_peer, "netns", &hub])?;
        ip(&[
            "-n",
            &hub,
            "link",
            "set",
            &client_peer,
            "master",
            "br0",
            "up",
        ])?;
        ip(&["addr", "add", &format!("{subnet}.1/24"), "dev", &client])?;
        ip(&["link", "set", &client, "up"])?;
        let mut addresses = Vec::new();
        for k in 0..n {
            let ns = format!("tfrh{tag}x{k}");
            ip(&["netns", "add", &ns])?;
            hosts.namespaces.push(ns.clone());
            let (leg, peer) = (format!("tfv{tag}x{k}"), format!("tfp{tag}x{k}"));
            ip(&["link", "add", &leg, "type", "veth", "peer", "name", &peer])?;
            ip(&["link", "set", &leg, "netns", &ns])?;
            ip(&["link", "set", &peer, "netns", &hub])?;
            ip(&["-n", &hub, "link", "set", &peer, "master", "br0", "up"])?;
            let address = format!("{subnet}.{}", k + 2);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                &leg,
            ])?;
            ip(&["-n", &ns, "link", "set", &leg, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            addresses.push(address);
        }
        Ok((hosts, addresses))
    }
}

impl Cluster {
    /// Like [`Cluster::start`], each task on its own namespaced host (see [`Hosts`]); `Err`
    /// says why that is not possible here (the caller skips with the reason printed).
    pub fn start_on_hosts(jobs: &[(&str, usize)]) -> Result<Cluster, String> {
        let total = jobs.iter().map(|j| j.1).sum();
        let (hosts, addresses) = Hosts::new(total)?;
        let mut addresses = addresses.into_iter();
        let map = job_map(jobs, || {
            format!("{}:2222", addresses.next().expect("address"))
        });
        // Namespace 0 is the bridge's; task k runs in namespace k + 1.
        let netns = hosts.namespaces[1..=total]
            .iter()
            .cloned()
            .map(Some)
            .collect();
        let mut cluster = Cluster::new(map, netns, "hosts");
        cluster._net = Some(hosts);
        for k in 0..cluster.tasks.len() {
            cluster.launch(k);
        }
        Ok(cluster)
    }
}
