//! `tfr-server --cluster cluster.json --job worker --task 0 [--bind ADDR]`: runs one task of a
//! cluster (its worker and master services) until SIGTERM or SIGINT. The spec may also come
//! from `--cluster-env VAR` (JSON, as TF_CONFIG; its `task` part names the task when
//! --job/--task are absent). `--secret-file FILE` or `--secret-env VAR` make every call carry
//! the cluster secret (the server requires it and sends it to its peers);
//! `--max-message-bytes N` bounds every message; `--chunk-bytes N` sets the size of the
//! chunks tensors are streamed to peers in. `--tls-cert FILE --tls-key FILE --tls-ca FILE`
//! serve TLS (tonic's rustls) and verify peers against the CA. `--session-idle-timeout SECS`
//! closes master sessions unused that long with no step running (a client that died without
//! closing; default 3600, 0 never). `--runtime-threads N` sets the threads of the server's
//! runtime (default: one per core; 1 suits several tasks sharing a host's cores). Prints
//! `tfr-server <task> listening on <address>` once it accepts connections.

use std::io::Write;
use std::path::PathBuf;
use tfr_distributed::channel::TlsConfig;
use tfr_distributed::{ChannelOptions, ClusterConfig, Secret, Server, ServerOptions, TaskId};

const USAGE: &str = "usage: tfr-server (--cluster FILE | --cluster-env VAR) [--job JOB --task N] \
                     [--bind HOST:PORT] [--secret-file FILE | --secret-env VAR] \
                     [--max-message-bytes N] [--chunk-bytes N] [--session-idle-timeout SECS] \
                     [--runtime-threads N] \
                     [--tls-cert FILE --tls-key FILE --tls-ca FILE]";

fn number(flag: &str, v: &str) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{flag} `{v}` is not a positive number of bytes"))
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut file, mut env, mut job, mut task, mut bind) = (None, None, None, None, None);
    let mut secret = None;
    let (mut tls_cert, mut tls_key, mut tls_ca) = (None, None, None);
    let mut channel = ChannelOptions::default();
    let mut idle = Some(std::time::Duration::from_secs(3600));
    let mut threads = None;
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--cluster" => file = Some(PathBuf::from(value()?)),
            "--cluster-env" => env = Some(value()?),
            "--job" => job = Some(value()?),
            "--task" => {
                let v = value()?;
                task = Some(
                    v.parse::<u32>()
                        .map_err(|_| format!("--task `{v}` is not a task index"))?,
                )
            }
            "--bind" => {
                let v = value()?;
                bind = Some(
                    v.parse()
                        .map_err(|_| format!("--bind `{v}` is not HOST:PORT (an IP address)"))?,
                )
            }
            "--secret-file" => {
                secret = Some(Secret::from_file(value()?.as_ref()).map_err(|e| e.to_string())?)
            }
            "--secret-env" => {
                secret = Some(Secret::from_env(&value()?).map_err(|e| e.to_string())?)
            }
            "--max-message-bytes" => {
                channel.max_message_bytes = number("--max-message-bytes", &value()?)?
            }
            "--chunk-bytes" => channel.chunk_bytes = number("--chunk-bytes", &value()?)?,
            "--runtime-threads" => {
                let v = value()?;
                threads = Some(v.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
                    format!("--runtime-threads `{v}` is not a positive number of threads")
                })?);
            }
            "--session-idle-timeout" => {
                let v = value()?;
                let secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
                    .ok_or_else(|| {
                        format!("--session-idle-timeout `{v}` is not a number of seconds")
                    })?;
                idle = (secs > 0.0).then(|| std::time::Duration::from_secs_f64(secs));
            }
            "--tls-cert" => tls_cert = Some(PathBuf::from(value()?)),
            "--tls-key" => tls_key = Some(PathBuf::from(value()?)),
            "--tls-ca" => tls_ca = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    let config = match (file, env) {
        (Some(f), None) => ClusterConfig::from_file(&f),
        (None, Some(v)) => ClusterConfig::from_env(&v),
        _ => return Err(format!("give one of --cluster or --cluster-env\n{USAGE}")),
    }
    .map_err(|e| e.to_string())?;
    let task = match (job, task, config.task) {
        (Some(j), Some(t), _) => TaskId::new(&j, t),
        (None, None, Some(t)) => t,
        _ => return Err(format!("name the task with --job and --task\n{USAGE}")),
    };
    channel.secret = secret;
    channel.tls = match (&tls_cert, &tls_key) {
        (Some(cert), Some(key)) => {
            // The CA that signed the peers' certificates (this task calls its peers too).
            let ca = tls_ca
                .as_deref()
                .ok_or_else(|| format!("TLS needs --tls-ca as well\n{USAGE}"))?;
            Some(TlsConfig::from_files(ca, Some((cert, key))).map_err(|e| e.to_string())?)
        }
        (None, None) if tls_ca.is_none() => None,
        _ => return Err(format!("TLS needs both --tls-cert and --tls-key\n{USAGE}")),
    };
    let options = ServerOptions {
        bind,
        channel,
        stop_on_signal: true,
        session_idle_timeout: idle,
        runtime_threads: threads,
    };
    let server = Server::start(&config.cluster, &task, options).map_err(|e| e.to_string())?;
    println!(
        "tfr-server {} listening on {}",
        task.name(),
        server.address()
    );
    let _ = std::io::stdout().flush();
    server.wait().map_err(|e| e.to_string())?;
    println!("tfr-server {} stopped", task.name());
    Ok(())
}

fn main() {
    // Streamed tensors reuse freed buffers instead of faulting in fresh pages.
    tfr_distributed::keep_freed_buffers();
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
