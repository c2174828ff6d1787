//! A Ballista cluster on loopback for one test: a scheduler and executors,
//! each a `cluster_node` process, killed when the handle drops.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    /// The scheduler, `127.0.0.1:port`.
    pub scheduler: String,
    scheduler_process: Child,
    pub executors: Vec<Child>,
    _work: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    /// A scheduler and `executors` executors (2 task slots, 1 GiB each).
    pub fn start(executors: usize) -> Cluster {
        let node = env!("CARGO_BIN_EXE_cluster_node");
        let work = tempfile::tempdir().expect("work dir");
        let port = free_port();
        let scheduler = format!("127.0.0.1:{port}");
        let scheduler_process = Command::new(node)
            .args(["scheduler", &scheduler])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the scheduler");
        wait_for_port(port, "the scheduler");
        let mut cluster = Cluster {
            scheduler,
            scheduler_process,
            executors: Vec::new(),
            _work: work,
        };
        for _ in 0..executors {
            cluster.add_executor();
        }
        cluster
    }

    /// The directory of executor `i`'s shuffle files.
    pub fn work_dir(&self, i: usize) -> std::path::PathBuf {
        self._work.path().join(format!("executor-{i}"))
    }

    /// Starts one more executor (2 task slots, 1 GiB).
    pub fn add_executor(&mut self) {
        let node = env!("CARGO_BIN_EXE_cluster_node");
        let (flight, grpc) = (free_port(), free_port());
        let dir = self.work_dir(self.executors.len());
        std::fs::create_dir_all(&dir).expect("executor work dir");
        let child = Command::new(node)
            .args([
                "executor",
                &self.scheduler,
                &flight.to_string(),
                &grpc.to_string(),
                &dir.display().to_string(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start an executor");
        wait_for_port(flight, "an executor");
        self.executors.push(child);
    }
}
impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self
            .executors
            .iter_mut()
            .chain(std::iter::once(&mut self.scheduler_process))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
