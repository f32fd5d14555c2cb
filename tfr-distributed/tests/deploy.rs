//! The Kubernetes manifest's command line (`deploy/k8s/tfr-cluster.yaml`), run as written on
//! this machine: the spec from an environment variable, the task index from a StatefulSet-style
//! hostname, all interfaces, the secret from the environment. A thin client then runs a step.

use crate::common;

use common::{bounded, free_ports};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use tfr_core::Tensor;
use tfr_distributed::{ChannelOptions, RemoteSession, RemoteSessionOptions, Secret};
use tfr_graph::{DType, Graph, Shape};

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_manifest_command_line_starts_tasks_that_serve_a_step() {
    let ports = free_ports(2);
    let spec = format!(
        r#"{{"cluster": {{"ps": ["127.0.0.1:{}"], "worker": ["127.0.0.1:{}"]}}}}"#,
        ports[0], ports[1]
    );
    let secret = "deploy-test-secret";
    let mut tasks = Vec::new();
    for (job, port) in [("ps", ports[0]), ("worker", ports[1])] {
        // As in the manifest, but with this test's port and binary.
        let script = format!(
            "exec \"$TFR_SERVER\" --cluster-env TFR_CLUSTER --job {job} --task \"${{HOSTNAME##*-}}\" \
             --bind 0.0.0.0:{port} --secret-env TFR_SECRET"
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .env("TFR_SERVER", env!("CARGO_BIN_EXE_tfr-server"))
            .env("TFR_CLUSTER", &spec)
            .env("TFR_SECRET", secret)
            .env("HOSTNAME", format!("{job}-0"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let stdout = child.stdout.take().expect("stdout");
        tasks.push(Kill(child));
        let line = bounded("a task to start", Duration::from_secs(30), move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            line
        });
        assert!(
            line.contains(&format!("/job:{job}/task:0 listening on 0.0.0.0:{port}")),
            "{line}"
        );
    }
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar()).unwrap();
    let w = g
        .with_device("/job:ps/task:0", |g| {
            let three = g.scalar(3.0f32)?;
            g.variable("w", three)
        })
        .unwrap();
    let init = g.global_variables_initializer().unwrap();
    let y = g
        .with_device("/job:worker/task:0", |g| g.mul(x, w.value))
        .unwrap();
    let options = RemoteSessionOptions {
        channel: ChannelOptions {
            connect_timeout: Duration::from_secs(3),
            secret: Some(Secret::new(secret, "test").unwrap()),
            ..ChannelOptions::default()
        },
        ..RemoteSessionOptions::default()
    };
    let s = RemoteSession::new(&format!("grpc://127.0.0.1:{}", ports[1]), &g, options).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    let r = s.run(&[(x, Tensor::scalar(2.0f32))], &[y], &[]).unwrap();
    assert_eq!(r[0].scalar_value::<f32>().unwrap(), 6.0);
}
