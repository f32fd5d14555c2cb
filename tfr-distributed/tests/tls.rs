//! TLS through tonic's rustls: tasks serve TLS with a certificate signed by a test CA (made
//! here with the `openssl` command; the test is skipped, saying so, where it is missing); a step across
//! two tasks (peer transfers included) runs over TLS, and a plain-text client is refused.

use crate::common;

use common::{Cluster, TempDir};
use std::process::Command;
use std::time::Duration;
use tfr_core::Tensor;
use tfr_distributed::{
    ChannelOptions, ClusterSession, ClusterSessionOptions, RemoteSession, RemoteSessionOptions,
    TlsConfig,
};
use tfr_graph::{DType, Graph, Shape};

#[test]
fn a_step_runs_over_tls_and_plain_clients_are_refused() {
    let dir = TempDir::new("tls");
    let path = |f: &str| dir.0.join(f).to_str().unwrap().to_string();
    let (ca, ca_key, cert, key, csr, ext) = (
        path("ca.pem"),
        path("ca.key"),
        path("cert.pem"),
        path("key.pem"),
        path("req.csr"),
        path("ext.cnf"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    // A CA, and a task certificate for 127.0.0.1 signed by it.
    let steps: [Vec<&str>; 3] = [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=tfr-test-ca",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=tfr-task",
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &cert,
            "-extfile",
            &ext,
        ],
    ];
    for args in &steps {
        match Command::new("openssl").args(args).output() {
            Ok(o) if o.status.success() => {}
            other => {
                println!("skipped: no usable `openssl` to make test certificates: {other:?}");
                return;
            }
        }
    }
    let cluster = Cluster::start_with(
        &[("worker", 2)],
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca],
        &[],
    );
    let tls = TlsConfig::from_files(ca.as_ref(), None).unwrap();
    let channel = |tls: Option<TlsConfig>| ChannelOptions {
        connect_timeout: Duration::from_secs(3),
        tls,
        ..ChannelOptions::default()
    };

    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::scalar()).unwrap();
    let sq = g
        .with_device("/job:worker/task:1", |g| g.mul(a, a))
        .unwrap();
    let y = g
        .with_device("/job:worker/task:0", |g| g.add(sq, a))
        .unwrap();
    let s = ClusterSession::new(
        &cluster.spec,
        &g,
        ClusterSessionOptions {
            channel: channel(Some(tls.clone())),
            ..ClusterSessionOptions::default()
        },
    )
    .unwrap();
    let r = s.run(&[(a, Tensor::scalar(3.0f32))], &[y], &[]).unwrap();
    assert_eq!(r[0].scalar_value::<f32>().unwrap(), 12.0);
    let remote = RemoteSession::new(
        &format!("grpc://{}", cluster.tasks[0].address),
        &g,
        RemoteSessionOptions {
            channel: channel(Some(tls)),
            ..RemoteSessionOptions::default()
        },
    )
    .unwrap();
    let r = remote
        .run(&[(a, Tensor::scalar(2.0f32))], &[y], &[])
        .unwrap();
    assert_eq!(r[0].scalar_value::<f32>().unwrap(), 6.0);

    // A plain-text client gets an error (not a hang), naming the task.
    let plain = ClusterSession::new(
        &cluster.spec,
        &g,
        ClusterSessionOptions {
            channel: channel(None),
            ..ClusterSessionOptions::default()
        },
    )
    .unwrap();
    let e = plain
        .run(&[(a, Tensor::scalar(1.0f32))], &[y], &[])
        .unwrap_err();
    assert!(e.to_string().contains("/job:worker/task:"), "{e}");
    // A bad PEM file is an error naming it.
    let m = TlsConfig::from_files(&dir.0.join("nope.pem"), None)
        .unwrap_err()
        .to_string();
    assert!(m.contains("nope.pem"), "{m}");
}
