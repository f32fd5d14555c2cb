//! The session programs use: [`tfr_core::Session`] with the machine's GPUs. Creating one
//! first registers tfr-cuda's kernels and GPU device factory (once per process, and only when
//! a GPU is usable), so the same program runs on a GPU when one is present and on the CPU
//! otherwise; [`SessionOptions::device`] forces either ([`DevicePolicy`]).
//!
//! tfr-core cannot depend on tfr-cuda, so this facade is where the two meet: `graph!` models
//! and builder graphs both create their sessions here.

use crate::{Graph, Result, SessionOptions};
use std::ops::Deref;
pub use tfr_core::DevicePolicy;

/// A [`tfr_core::Session`] whose devices include the GPUs (see the module doc). Everything
/// else is the core session's, through `Deref`.
#[derive(Clone)]
pub struct Session(tfr_core::Session);

/// Registers tfr-cuda with the runtime (once); the number of GPUs, or why there are none.
pub fn gpus() -> std::result::Result<usize, String> {
    tfr_cuda::runtime::register()
}

impl Session {
    /// A session over a copy of `graph`, on a GPU when one is usable and the options allow it.
    /// With [`DevicePolicy::Gpu`] and no usable GPU, an error saying why there is none.
    pub fn new(graph: &Graph, options: SessionOptions) -> Result<Session> {
        if options.device != DevicePolicy::Cpu && options.target.is_empty() {
            if let (Err(why), DevicePolicy::Gpu) = (gpus(), options.device) {
                return Err(tfr_core::Error::InvalidArgument {
                    arg: "device".into(),
                    message: format!("DevicePolicy::Gpu requires a GPU: {why}"),
                });
            }
        }
        tfr_core::Session::new(graph, options).map(Session)
    }

    /// The core session.
    pub fn into_inner(self) -> tfr_core::Session {
        self.0
    }

    /// Where the session runs its ops, for people: the GPU with its name, or "CPU" and why.
    pub fn device_summary(&self) -> String {
        let devices = self.0.devices();
        if let Some(gpu) = devices.iter().find(|d| d.contains("/device:GPU:")) {
            let index = gpu
                .rsplit(':')
                .next()
                .and_then(|i| i.parse::<usize>().ok())
                .unwrap_or(0);
            let name = tfr_cuda::CudaDevice::get(index)
                .map(|d| d.name().to_string())
                .unwrap_or_else(|e| e.0);
            return format!("GPU {gpu} ({name}), with the CPU for ops without a GPU kernel");
        }
        match gpus() {
            Ok(_) => "CPU (GPUs present but not used by this session's options)".into(),
            Err(why) => format!("CPU ({why})"),
        }
    }
}

impl Deref for Session {
    type Target = tfr_core::Session;
    fn deref(&self) -> &tfr_core::Session {
        &self.0
    }
}

impl From<Session> for tfr_core::Session {
    fn from(s: Session) -> tfr_core::Session {
        s.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Shape, Tensor};

    fn doubled() -> (Graph, crate::Output, crate::Output) {
        let mut g = Graph::new();
        let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
        let y = g.add(x, x).unwrap();
        (g, x, y)
    }

    fn run(s: &Session, x: crate::Output, y: crate::Output) -> Vec<f32> {
        let out = s
            .run(
                &[(x, Tensor::new(&[2], vec![1.0f32, 2.0]).unwrap())],
                &[y],
                &[],
            )
            .unwrap();
        out[0].to_vec::<f32>().unwrap()
    }

    #[test]
    fn forcing_the_cpu_keeps_every_node_on_the_cpu() {
        let (g, x, y) = doubled();
        let options = SessionOptions {
            device: DevicePolicy::Cpu,
            ..SessionOptions::default()
        };
        let s = Session::new(&g, options).unwrap();
        assert!(
            s.devices().iter().all(|d| d.contains("CPU")),
            "{:?}",
            s.devices()
        );
        let placed = s.placement(&[x], &[y], &[]).unwrap();
        assert!(placed.iter().all(|(_, d)| d.contains("CPU")), "{placed:?}");
        assert_eq!(run(&s, x, y), vec![2.0, 4.0]);
        assert!(
            s.device_summary().starts_with("CPU"),
            "{}",
            s.device_summary()
        );
    }

    #[test]
    fn auto_uses_a_gpu_when_present_and_the_cpu_otherwise() {
        let (g, x, y) = doubled();
        let s = Session::new(&g, SessionOptions::default()).unwrap();
        let placed = s.placement(&[x], &[y], &[]).unwrap();
        match gpus() {
            Ok(_) => assert!(placed.iter().any(|(_, d)| d.contains("GPU")), "{placed:?}"),
            Err(why) => {
                assert!(placed.iter().all(|(_, d)| d.contains("CPU")), "{placed:?}");
                assert_eq!(s.device_summary(), format!("CPU ({why})"));
            }
        }
        assert_eq!(run(&s, x, y), vec![2.0, 4.0]);
    }

    #[test]
    fn forcing_a_gpu_without_one_is_an_error_saying_why() {
        let (g, ..) = doubled();
        let options = SessionOptions {
            device: DevicePolicy::Gpu,
            ..SessionOptions::default()
        };
        match (gpus(), Session::new(&g, options)) {
            (Ok(_), r) => assert!(r.is_ok(), "a GPU is present"),
            (Err(why), Err(e)) => {
                let msg = e.to_string();
                assert!(msg.contains("DevicePolicy::Gpu requires a GPU"), "{msg}");
                assert!(msg.contains(&why), "{msg}");
            }
            (Err(_), Ok(_)) => panic!("DevicePolicy::Gpu without a GPU must fail"),
        }
    }

    #[test]
    fn the_core_session_refuses_gpu_policy_without_a_gpu_device() {
        let (g, ..) = doubled();
        let options = SessionOptions {
            device: DevicePolicy::Gpu,
            registered_devices: false,
            ..SessionOptions::default()
        };
        match tfr_core::Session::new(&g, options) {
            Err(e) => assert!(e.to_string().contains("requires a GPU"), "{e}"),
            Ok(_) => panic!("a session without a GPU device must refuse DevicePolicy::Gpu"),
        }
    }
}
