//! `tfr-server --cluster cluster.json --job worker --task 0 [--bind ADDR]`: runs one task of a
//! cluster until SIGTERM or SIGINT. The spec may also come from `--cluster-env VAR` (JSON, as
//! TF_CONFIG; its `task` part names the task when --job/--task are absent). Prints
//! `tfr-server <task> listening on <address>` once it accepts connections.

use std::io::Write;
use std::path::PathBuf;
use tfr_distributed::{ClusterConfig, Server, ServerOptions, TaskId};

const USAGE: &str = "usage: tfr-server (--cluster FILE | --cluster-env VAR) [--job JOB --task N] \
                     [--bind HOST:PORT]";

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut file, mut env, mut job, mut task, mut bind) = (None, None, None, None, None);
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
    let options = ServerOptions {
        bind,
        stop_on_signal: true,
        ..ServerOptions::default()
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
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
