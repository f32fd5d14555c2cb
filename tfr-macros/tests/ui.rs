//! Compile-time behavior of `graph!`: every error kind has a case under `ui/fail` with the
//! message rustc prints (its `.stderr` snapshot), and `ui/pass` holds models that compile and
//! run. Regenerate snapshots with `TRYBUILD=overwrite cargo test -p tfr-macros --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
