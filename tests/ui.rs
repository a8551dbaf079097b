//! The compile-time contract of `#[idempotent]`: each `tests/ui/<what-is-wrong>.rs` is one
//! mistake and its `.stderr` is the message a user sees; `tests/ui/pass/` is what must
//! compile. Regenerate the messages with `TRYBUILD=overwrite cargo test --test ui`, then
//! read them as a user would.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
