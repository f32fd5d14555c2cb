//! Device names: `/job:J/replica:R/task:T/device:TYPE:N`, and partial specs that match them
//! (`/device:GPU:*`, `/cpu:1`, `/job:worker`), as TensorFlow's `DeviceNameUtils` parses them.

use std::fmt;

/// A full or partial device name; `None` fields are unspecified (match anything).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeviceSpec {
    pub job: Option<String>,
    pub replica: Option<u32>,
    pub task: Option<u32>,
    /// Upper-case type, e.g. `CPU`, `GPU`.
    pub device_type: Option<String>,
    pub index: Option<u32>,
}

impl DeviceSpec {
    /// Parses a spec; the empty string is the spec that matches every device.
    pub fn parse(s: &str) -> Result<DeviceSpec, String> {
        let mut spec = DeviceSpec::default();
        let bad = |why: &str| format!("bad device spec `{s}`: {why}");
        for part in s.split('/').filter(|p| !p.is_empty()) {
            let (key, rest) = part
                .split_once(':')
                .ok_or_else(|| bad(&format!("`{part}` has no `:`")))?;
            let number = |v: &str| -> Result<Option<u32>, String> {
                if v == "*" {
                    Ok(None)
                } else {
                    v.parse()
                        .map(Some)
                        .map_err(|_| bad(&format!("`{v}` is not a number")))
                }
            };
            match key.to_ascii_lowercase().as_str() {
                "job" => spec.job = (rest != "*").then(|| rest.to_string()),
                "replica" => spec.replica = number(rest)?,
                "task" => spec.task = number(rest)?,
                "device" => {
                    let (t, i) = rest.split_once(':').unwrap_or((rest, "*"));
                    spec.device_type = (t != "*").then(|| t.to_ascii_uppercase());
                    spec.index = number(i)?;
                }
                "cpu" | "gpu" => {
                    spec.device_type = Some(key.to_ascii_uppercase());
                    spec.index = number(rest)?;
                }
                other => return Err(bad(&format!("unknown field `{other}`"))),
            }
        }
        Ok(spec)
    }

    /// A full name on the local process.
    pub fn local(device_type: &str, index: u32) -> DeviceSpec {
        DeviceSpec {
            job: Some("localhost".into()),
            replica: Some(0),
            task: Some(0),
            device_type: Some(device_type.into()),
            index: Some(index),
        }
    }

    /// True when every field this spec sets equals the device's.
    pub fn matches(&self, device: &DeviceSpec) -> bool {
        fn ok<T: PartialEq>(want: &Option<T>, have: &Option<T>) -> bool {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        }
        ok(&self.job, &device.job)
            && ok(&self.replica, &device.replica)
            && ok(&self.task, &device.task)
            && ok(&self.device_type, &device.device_type)
            && ok(&self.index, &device.index)
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(j) = &self.job {
            write!(f, "/job:{j}")?;
        }
        if let Some(r) = self.replica {
            write!(f, "/replica:{r}")?;
        }
        if let Some(t) = self.task {
            write!(f, "/task:{t}")?;
        }
        if self.device_type.is_some() || self.index.is_some() {
            let t = self.device_type.as_deref().unwrap_or("*");
            match self.index {
                Some(i) => write!(f, "/device:{t}:{i}")?,
                None => write!(f, "/device:{t}:*")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let cpu1 = DeviceSpec::local("CPU", 1);
        assert_eq!(
            cpu1.to_string(),
            "/job:localhost/replica:0/task:0/device:CPU:1"
        );
        assert_eq!(DeviceSpec::parse(&cpu1.to_string()).unwrap(), cpu1);
        for (spec, hit) in [
            ("", true),
            ("/device:CPU:1", true),
            ("/cpu:1", true),
            ("/device:CPU:*", true),
            ("/device:GPU:*", false),
            ("/job:worker", false),
            ("/job:localhost/task:0", true),
            ("/device:cpu:0", false),
        ] {
            assert_eq!(
                DeviceSpec::parse(spec).unwrap().matches(&cpu1),
                hit,
                "{spec}"
            );
        }
        assert!(DeviceSpec::parse("/device:CPU:x").is_err());
        assert!(DeviceSpec::parse("/nonsense").is_err());
        assert!(DeviceSpec::parse("/planet:mars").is_err());
    }
}
