//! The module boundary rules this crate must keep (`tidy`; `cargo xtask check` runs the
//! same over every crate): a violation names the offending edge or spot.

#[test]
fn keeps_the_boundary_rules() {
    tidy::assert_tidy(env!("CARGO_MANIFEST_DIR"));
}
