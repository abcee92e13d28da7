//! Writes every fuzz target's seed inputs under a folder, one folder per
//! target: `fuzz-seeds DIR [TARGET ...]`.

use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: fuzz-seeds DIR [TARGET ...]\nwrites each target's seeds to DIR/TARGET/");
        return std::process::ExitCode::from(2);
    };
    let only: Vec<String> = args.collect();
    for name in &only {
        if cocoon_fuzz::target(name).is_none() {
            eprintln!("fuzz-seeds: no target {name:?}");
            return std::process::ExitCode::from(2);
        }
    }
    for seed in cocoon_fuzz::seeds::all() {
        if !only.is_empty() && !only.iter().any(|t| t == seed.target) {
            continue;
        }
        let folder = dir.join(seed.target);
        let path = folder.join(format!("seed-{}", seed.name));
        if let Err(e) =
            std::fs::create_dir_all(&folder).and_then(|()| std::fs::write(&path, &seed.bytes))
        {
            eprintln!("fuzz-seeds: writing {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
