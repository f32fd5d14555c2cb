//! Models that must compile and run, each a small program under `tests/pass/`. They used to be
//! trybuild pass cases; as ordinary tests they compile once with this binary, and the trybuild
//! run (compile-fail cases only) needs only `cargo check` of the dependencies, not a full build.

/// What a case's `main` returns: nothing, or a `Result` that must be `Ok`.
trait Outcome {
    fn check(self);
}

impl Outcome for () {
    fn check(self) {}
}

impl<E: std::fmt::Debug> Outcome for Result<(), E> {
    fn check(self) {
        self.unwrap();
    }
}

macro_rules! pass_case {
    ($name:ident, $file:literal) => {
        mod $name {
            include!($file);

            #[test]
            fn compiles_and_runs() {
                super::Outcome::check(main());
            }
        }
    };
}

pass_case!(control_flow, "pass/control_flow.rs");
pass_case!(feeds_checked, "pass/feeds_checked.rs");
pass_case!(registry_and_tuples, "pass/registry_and_tuples.rs");
pass_case!(scopes_devices, "pass/scopes_devices.rs");
