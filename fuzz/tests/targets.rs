//! Every fuzz target over its seeds and over every input that once made it
//! crash (`fuzz/regressions/TARGET/`), without the fuzzer: the targets keep
//! building and the crashes stay fixed. The seeds must go all the way
//! through, or the fuzzer would start at the first length check.

use std::collections::BTreeMap;
use std::path::PathBuf;

#[test]
fn every_target_accepts_one_of_its_seeds_and_survives_all() {
    let mut accepted: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in cocoon_fuzz::seeds::all() {
        let target = cocoon_fuzz::target(seed.target)
            .unwrap_or_else(|| panic!("seed {} names no target {}", seed.name, seed.target));
        if (target.run)(&seed.bytes) {
            *accepted.entry(seed.target).or_default() += 1;
        }
    }
    for t in cocoon_fuzz::TARGETS {
        assert!(
            accepted.get(t.name).copied().unwrap_or(0) > 0,
            "no seed of {} is accepted: {accepted:?}",
            t.name
        );
    }
}

#[test]
fn inputs_that_once_crashed_a_target_no_longer_do() {
    // Read where the tests run, not where they were compiled: a cached
    // build may come from another checkout.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = PathBuf::from(manifest).join("regressions");
    let mut ran = 0;
    for t in cocoon_fuzz::TARGETS {
        let Ok(entries) = std::fs::read_dir(dir.join(t.name)) else {
            continue;
        };
        for entry in entries.flatten() {
            let bytes = std::fs::read(entry.path()).expect("a regression input reads");
            (t.run)(&bytes);
            ran += 1;
        }
    }
    // Each folder holds what a fuzzer found; an empty set is allowed, a
    // misnamed folder is not.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                name == "README.md" || cocoon_fuzz::target(&name).is_some(),
                "fuzz/regressions/{name} names no target"
            );
        }
    }
    eprintln!("{ran} regression inputs");
}

#[test]
fn tampered_seeds_are_refused() {
    // A signed or authenticated seed with one byte flipped near its end
    // must not pass: the targets check, they do not just parse.
    for seed in cocoon_fuzz::seeds::all() {
        if !matches!(seed.target, "voucher" | "telegram_init_data") {
            continue;
        }
        let target = cocoon_fuzz::target(seed.target).expect("a target");
        let mut bytes = seed.bytes.clone();
        let at = bytes.len() - 2;
        bytes[at] ^= 0x01;
        assert!(
            !(target.run)(&bytes),
            "{}/{} with byte {at} flipped was accepted",
            seed.target,
            seed.name
        );
    }
}
