//! Devices a session runs on. Each has a full name, a type (which selects kernels) and a
//! runner: persistent threads that run the device's partitions of steps.

use crate::kernel::DeviceType;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, Weak};
use tfr_graph::device::DeviceSpec;

/// Work for a device's runner. It returns what to do once its thread is back on the idle
/// list (typically: report the result), so whoever waits for that report finds the thread
/// idle again and the next step reuses it instead of starting another.
pub type Job = Box<dyn FnOnce() -> Box<dyn FnOnce() + Send> + Send + 'static>;

/// A job and the sender of the worker that runs it (handed back to the idle list after it).
struct Msg(Job, Sender<Msg>);

pub struct Device {
    pub spec: DeviceSpec,
    pub device_type: DeviceType,
    /// Senders of the runner's idle threads.
    idle: Arc<Mutex<Vec<Sender<Msg>>>>,
    spawned: AtomicUsize,
}

impl Device {
    /// CPU device `index`.
    pub fn cpu(index: u32) -> Device {
        Device {
            spec: DeviceSpec::local("CPU", index),
            device_type: DeviceType::Cpu,
            idle: Arc::default(),
            spawned: AtomicUsize::new(0),
        }
    }

    /// CPU device `index` of task `task` of job `job`: a device of a cluster, as the
    /// distributed runtime places steps over them (`/job:J/replica:0/task:T/device:CPU:N`).
    pub fn cpu_of_task(job: &str, task: u32, index: u32) -> Device {
        let mut device = Device::cpu(index);
        device.spec.job = Some(job.to_string());
        device.spec.task = Some(task);
        device
    }

    pub fn name(&self) -> String {
        self.spec.to_string()
    }

    /// Threads the device's runner has started (they persist across steps).
    pub fn runner_threads(&self) -> usize {
        self.spawned.load(Ordering::Relaxed)
    }

    /// Runs `job` on one of the device's persistent threads, dedicated to it until it returns:
    /// an idle one, or a new one when all are busy, so a partition that waits for a value from
    /// another device never holds a thread that another step's partition needs. A thread
    /// goes back to the idle list after its job, and ends when the device is dropped.
    pub fn run(&self, job: Job) -> std::io::Result<()> {
        let mut job = job;
        loop {
            let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
            let worker = match idle {
                Some(w) => w,
                None => self.spawn()?,
            };
            match worker.send(Msg(job, worker.clone())) {
                Ok(()) => return Ok(()),
                // That thread is gone: try another.
                Err(e) => job = (e.0).0,
            }
        }
    }

    fn spawn(&self) -> std::io::Result<Sender<Msg>> {
        let (tx, rx) = channel::<Msg>();
        let idle: Weak<Mutex<Vec<Sender<Msg>>>> = Arc::downgrade(&self.idle);
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        std::thread::Builder::new()
            .name(format!("tfr-{}-{n}", self.spec))
            .spawn(move || {
                while let Ok(Msg(job, me)) = rx.recv() {
                    // Jobs report their own failures; a panic must not take the thread along.
                    let then = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    let back = match idle.upgrade() {
                        Some(list) => match list.lock() {
                            Ok(mut v) => {
                                v.push(me);
                                true
                            }
                            Err(_) => false,
                        },
                        None => false,
                    };
                    if let Ok(then) = then {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(then));
                    }
                    if !back {
                        // The device is gone (or its list poisoned): end the thread.
                        return;
                    }
                }
            })?;
        Ok(tx)
    }
}
