//! Session-owned state: variables (and, later, queues), looked up by shared name.

use crate::error::{KResult, KernelError};
use crate::tensor::Tensor;
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tfr_graph::{DType, Shape};

/// A variable: a dtype, a static shape, and a value once initialized.
pub struct Var {
    pub name: String,
    pub dtype: DType,
    pub shape: Shape,
    pub value: RwLock<Option<Tensor>>,
}

impl Var {
    /// The current value; an error naming the variable when it was never assigned.
    pub fn read(&self) -> KResult<Tensor> {
        self.value
            .read()
            .map_err(|_| KernelError::internal("variable lock poisoned"))?
            .clone()
            .ok_or_else(|| {
                KernelError::precondition(format!(
                    "variable `{}` is not initialized; run its initializer first",
                    self.name
                ))
            })
    }

    /// Checks that `t` may be stored in this variable.
    pub fn check(&self, t: &Tensor) -> KResult {
        if t.dtype() != self.dtype {
            return Err(KernelError::invalid(format!(
                "variable `{}` holds {}, cannot assign {}",
                self.name,
                self.dtype,
                t.dtype()
            )));
        }
        if !self.shape.accepts(t.shape()) {
            return Err(KernelError::invalid(format!(
                "variable `{}` has shape {}, cannot assign shape {:?}",
                self.name,
                self.shape,
                t.shape()
            )));
        }
        Ok(())
    }
}

/// The resources of one session.
#[derive(Default)]
pub struct ResourceMgr {
    vars: RwLock<HashMap<String, Arc<Var>>>,
    /// Per-session kernel state shared by every compiled step (e.g. a random op's stream
    /// position), by key.
    state: RwLock<HashMap<String, Arc<dyn Any + Send + Sync>>>,
}

impl ResourceMgr {
    /// The variable `name`, created (uninitialized) on first use. Its dtype and shape must agree
    /// with every other handle of the same name.
    pub fn variable(&self, name: &str, dtype: DType, shape: &Shape) -> KResult<Arc<Var>> {
        if let Some(v) = self
            .vars
            .read()
            .map_err(|_| KernelError::internal("poisoned"))?
            .get(name)
        {
            return check_same(v, dtype, shape).map(|_| v.clone());
        }
        let mut vars = self
            .vars
            .write()
            .map_err(|_| KernelError::internal("poisoned"))?;
        let v = vars.entry(name.to_string()).or_insert_with(|| {
            Arc::new(Var {
                name: name.to_string(),
                dtype,
                shape: shape.clone(),
                value: RwLock::new(None),
            })
        });
        check_same(v, dtype, shape).map(|_| v.clone())
    }

    /// The variable `name` if some handle has created it.
    pub fn lookup(&self, name: &str) -> KResult<Arc<Var>> {
        self.vars
            .read()
            .map_err(|_| KernelError::internal("poisoned"))?
            .get(name)
            .cloned()
            .ok_or_else(|| KernelError {
                code: crate::error::Code::NotFound,
                message: format!("no variable named `{name}` exists in this session"),
            })
    }

    /// The session-wide state object under `key`, made by `make` on first use. Kernels of the
    /// same node in different compiled steps share it, as TensorFlow's do within a session.
    pub fn state<T: Any + Send + Sync>(
        &self,
        key: &str,
        make: impl FnOnce() -> T,
    ) -> KResult<Arc<T>> {
        let found = self
            .state
            .read()
            .map_err(|_| KernelError::internal("poisoned"))?
            .get(key)
            .cloned();
        let any = match found {
            Some(a) => a,
            None => {
                let mut map = self
                    .state
                    .write()
                    .map_err(|_| KernelError::internal("poisoned"))?;
                map.entry(key.to_string())
                    .or_insert_with(|| Arc::new(make()) as Arc<dyn Any + Send + Sync>)
                    .clone()
            }
        };
        any.downcast::<T>()
            .map_err(|_| KernelError::internal(format!("state `{key}` has another type")))
    }

    /// The session-wide state object under `key` when one exists: `Ok(None)` when nothing was
    /// made under `key`, an error when what is there has another type. The lookup half of
    /// [`ResourceMgr::state`], for kernels that use a resource another node created (a queue).
    pub fn find_state<T: Any + Send + Sync>(&self, key: &str) -> KResult<Option<Arc<T>>> {
        let found = self
            .state
            .read()
            .map_err(|_| KernelError::internal("poisoned"))?
            .get(key)
            .cloned();
        match found {
            None => Ok(None),
            Some(any) => any
                .downcast::<T>()
                .map(Some)
                .map_err(|_| KernelError::internal(format!("state `{key}` has another type"))),
        }
    }

    /// Keys of the session-wide state objects whose key starts with `prefix`, sorted.
    pub fn state_keys(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .state
            .read()
            .map(|m| {
                m.keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Registers `value` under `key`, replacing any previous one.
    pub fn insert_state<T: Any + Send + Sync>(&self, key: &str, value: Arc<T>) -> KResult {
        self.state
            .write()
            .map_err(|_| KernelError::internal("poisoned"))?
            .insert(key.to_string(), value);
        Ok(())
    }

    /// Drops the state under `key`.
    pub fn remove_state(&self, key: &str) {
        if let Ok(mut m) = self.state.write() {
            m.remove(key);
        }
    }

    /// Names of all variables.
    pub fn variable_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .vars
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn check_same(v: &Var, dtype: DType, shape: &Shape) -> KResult {
    if v.dtype != dtype || v.shape.merge(shape).is_err() {
        return Err(KernelError::invalid(format!(
            "variable `{}` exists as {}{} but a handle asks for {dtype}{shape}",
            v.name, v.dtype, v.shape
        )));
    }
    Ok(())
}
