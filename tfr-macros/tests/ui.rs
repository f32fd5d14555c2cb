//! Compile-time behavior of `graph!`: every error kind has a case under `ui/fail` with the
//! message rustc prints (its `.stderr` snapshot). Models that must compile and run are ordinary
//! tests (`pass_cases.rs`), so trybuild only has to `cargo check` the dependencies.
//! Regenerate snapshots with `TRYBUILD=overwrite cargo test -p tfr-macros --test suite ui::`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
}
