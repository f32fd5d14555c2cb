//! The cluster's shared secret: when a server is given one, every RPC of its worker and
//! master services must carry it (metadata `tfr-secret`), checked by a tonic interceptor
//! before the call reaches the service, so a call without it, or with a wrong one, gets
//! `Unauthenticated` and changes nothing. Clients (sessions, the master, peer tasks) attach it
//! with the matching client interceptor.
//!
//! The secret authenticates callers; it does not encrypt: over untrusted networks use TLS
//! (or a private network), as the secret travels with every call.

use crate::error::{Error, Result};
use std::path::Path;
use std::sync::Arc;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The metadata key carrying the secret.
pub const SECRET_HEADER: &str = "tfr-secret";

/// A shared secret (printable ASCII, at least 8 characters). Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

fn secret_error(source: &str, message: impl std::fmt::Display) -> Error {
    Error::Server(format!("cluster secret from {source}: {message}"))
}

impl Secret {
    /// The secret `text` (surrounding whitespace removed); `source` names it in errors.
    pub fn new(text: &str, source: &str) -> Result<Secret> {
        let text = text.trim();
        if text.len() < 8 {
            return Err(secret_error(
                source,
                format!("it has {} characters, at least 8 are needed", text.len()),
            ));
        }
        if let Some(c) = text.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(secret_error(
                source,
                format!("character {c:?} is not printable ASCII"),
            ));
        }
        Ok(Secret(text.into()))
    }

    /// The secret held by file `path` (a trailing newline is ignored).
    pub fn from_file(path: &Path) -> Result<Secret> {
        let source = format!("file `{}`", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| secret_error(&source, e))?;
        Secret::new(&text, &source)
    }

    /// The secret held by environment variable `var`.
    pub fn from_env(var: &str) -> Result<Secret> {
        let source = format!("environment variable `{var}`");
        let text = std::env::var(var).map_err(|e| secret_error(&source, e))?;
        Secret::new(&text, &source)
    }

    /// Compares in time independent of where the bytes differ.
    fn matches(&self, got: &[u8]) -> bool {
        let want = self.0.as_bytes();
        want.len() == got.len() && want.iter().zip(got).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    }

    fn metadata(&self) -> Option<MetadataValue<Ascii>> {
        // Printable ASCII (checked by `new`) is always a valid metadata value.
        self.0.parse().ok()
    }
}

/// The client interceptor: attaches the secret, when there is one, to every call.
#[derive(Clone, Debug, Default)]
pub struct AddSecret(Option<MetadataValue<Ascii>>);

impl AddSecret {
    pub fn new(secret: Option<&Secret>) -> AddSecret {
        AddSecret(secret.and_then(Secret::metadata))
    }
}

impl Interceptor for AddSecret {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert(SECRET_HEADER, v.clone());
        }
        Ok(request)
    }
}

/// The server interceptor: without a configured secret every call passes; with one, a call
/// must carry it.
#[derive(Clone, Debug, Default)]
pub struct CheckSecret(Option<Secret>);

impl CheckSecret {
    pub fn new(secret: Option<Secret>) -> CheckSecret {
        CheckSecret(secret)
    }
}

impl Interceptor for CheckSecret {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(secret) = &self.0 else {
            return Ok(request);
        };
        match request.metadata().get(SECRET_HEADER) {
            Some(v) if secret.matches(v.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated(
                "wrong cluster secret: the call was refused",
            )),
            None => Err(Status::unauthenticated(format!(
                "this server requires the cluster secret (metadata `{SECRET_HEADER}`); \
                 the call carried none and was refused"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked_and_never_shown() {
        let s = Secret::new("  correct-horse\n", "test").unwrap();
        assert!(s.matches(b"correct-horse"));
        assert!(!s.matches(b"correct-horsf"));
        assert!(!s.matches(b"correct"));
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let m = Secret::new("short", "`--secret`").unwrap_err().to_string();
        assert!(m.contains("`--secret`") && m.contains("at least 8"), "{m}");
        let m = Secret::new("has a space", "x").unwrap_err().to_string();
        assert!(m.contains("' '"), "{m}");

        let mut check = CheckSecret::new(Some(s.clone()));
        let e = check.call(Request::new(())).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let mut wrong = AddSecret::new(Some(&Secret::new("another-secret", "x").unwrap()));
        let e = check
            .call(wrong.call(Request::new(())).unwrap())
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("wrong"), "{e}");
        let mut right = AddSecret::new(Some(&s));
        assert!(check.call(right.call(Request::new(())).unwrap()).is_ok());
        let mut open = CheckSecret::new(None);
        assert!(open.call(Request::new(())).is_ok());
    }

    #[test]
    fn secret_from_a_missing_file_or_variable_is_an_error_naming_it() {
        let m = Secret::from_file(Path::new("/nonexistent/tfr-secret"))
            .unwrap_err()
            .to_string();
        assert!(m.contains("/nonexistent/tfr-secret"), "{m}");
        let m = Secret::from_env("TFR_TEST_NO_SUCH_SECRET_VAR")
            .unwrap_err()
            .to_string();
        assert!(m.contains("TFR_TEST_NO_SUCH_SECRET_VAR"), "{m}");
    }
}
