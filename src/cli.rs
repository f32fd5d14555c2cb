//! What command-line programs (the examples) share at the end of `main`: an error is printed as
//! sentences — `error: …` and one `caused by: …` line per cause — never as a debug structure,
//! and the process exits with a non-zero status.
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! fn run() -> Result<(), Box<dyn std::error::Error>> {
//!     Err("no data".into())
//! }
//!
//! fn main() -> ExitCode {
//!     tfr::cli::report(run())
//! }
//! ```

use std::error::Error;
use std::io::Write;
use std::process::ExitCode;

/// `ExitCode::SUCCESS` for `Ok`; for an error, prints [`error_text`] to stderr and returns
/// `ExitCode::FAILURE` (status 1).
pub fn report<E: Into<Box<dyn Error>>>(result: Result<(), E>) -> ExitCode {
    report_to(result, &mut std::io::stderr())
}

/// [`report`], writing to `out` instead of stderr.
pub fn report_to<E: Into<Box<dyn Error>>>(result: Result<(), E>, out: &mut dyn Write) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Nothing better to do when stderr itself fails.
            let _ = out.write_all(error_text(&*e.into()).as_bytes());
            let _ = out.flush();
            ExitCode::FAILURE
        }
    }
}

/// `error: <e>\n`, then `  caused by: <cause>\n` for each cause in `e`'s source chain. A cause
/// whose text the lines above already contain is left out: many errors (ours included) put
/// their source in their own message.
pub fn error_text(e: &(dyn Error + 'static)) -> String {
    let mut text = format!("error: {e}\n");
    let mut cause = e.source();
    while let Some(c) = cause {
        let line = c.to_string();
        if !text.contains(&line) {
            text.push_str(&format!("  caused by: {line}\n"));
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// An error with an optional source that its message does not repeat.
    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<dyn Error + 'static>>);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref()
        }
    }

    #[test]
    fn errors_print_as_sentences_with_their_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "disk gone");
        let e = Wrapped(
            "cannot load MNIST",
            Some(Box::new(Wrapped(
                "cannot read the cache",
                Some(Box::new(io)),
            ))),
        );
        assert_eq!(
            error_text(&e),
            "error: cannot load MNIST\n  caused by: cannot read the cache\n  caused by: disk gone\n"
        );
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let e = tfr_nn::datasets::DatasetError::Io {
            path: "data/mnist/train-images-idx3-ubyte".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "No such file"),
        };
        assert_eq!(
            error_text(&e),
            "error: `data/mnist/train-images-idx3-ubyte`: No such file\n"
        );
    }

    #[test]
    fn report_prints_no_debug_structures_and_fails() {
        let e = tfr_nn::datasets::DatasetError::Format {
            path: "data/mnist/train-images-idx3-ubyte".into(),
            message: "truncated: dims [3] of U8 need 3 data bytes, the file has 1".into(),
        };
        let mut out = Vec::new();
        let code = report_to(Err::<(), _>(e), &mut out);
        assert_eq!(code, ExitCode::FAILURE);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "error: `data/mnist/train-images-idx3-ubyte`: truncated: dims [3] of U8 need 3 data \
             bytes, the file has 1\n"
        );
        // A failed restore reads as the kernel's sentence, without the node and status code.
        let e = tfr_nn::saver::CheckpointError::Session(crate::Error::Kernel {
            node: "save/Restore".into(),
            op: "Restore".into(),
            code: crate::Code::InvalidArgument,
            message: "checkpoint `m-3.safetensors` is corrupted".into(),
        });
        let mut out = Vec::new();
        assert_eq!(report_to(Err::<(), _>(e), &mut out), ExitCode::FAILURE);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "error: checkpoint `m-3.safetensors` is corrupted\n");
        // Plain messages (argument errors) and success.
        let mut out = Vec::new();
        assert_eq!(
            report_to(Err::<(), _>("unknown argument `--x`"), &mut out),
            ExitCode::FAILURE
        );
        assert_eq!(out, b"error: unknown argument `--x`\n");
        let mut out = Vec::new();
        assert_eq!(report_to(Ok::<(), String>(()), &mut out), ExitCode::SUCCESS);
        assert!(out.is_empty());
    }
}
