//! The payments module's event contracts against the golden files in `tests/it/golden/`
//! (`kernel::contract::check_golden` says what is checked; `GOLDEN=write` writes a new
//! version's file).

#[test]
fn every_event_type_matches_its_golden_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/golden");
    if let Err(failures) = kernel::contract::check_golden(&payments_api::events::LOG, &dir) {
        panic!("{failures}");
    }
}
