//! Replays every committed fuzz input through the checks of its fuzz target, on stable Rust and
//! without libFuzzer: the seeds in `fuzz/seeds/<target>/` and the minimised crash inputs in
//! `fuzz/regressions/<target>/`. The checks are the fuzz targets' own bodies
//! (`fuzz/checks/<target>.rs`, included below), so a bug a fuzzer once found stays fixed in
//! plain `cargo test`. See docs/FUZZING.md ("When a target finds something").

#[path = "../fuzz/checks/mod.rs"]
mod checks;

use std::any::Any;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Files of `dir` that are inputs, sorted: everything but dot files and `*.md` notes. A missing
/// directory has none.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    };
    let mut files = Vec::new();
    for e in rd {
        let path = e
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .path();
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with('.') || path.extension().is_some_and(|x| x == "md") {
            continue;
        }
        assert!(
            path.is_file(),
            "{} is not a file: an input directory holds only input files",
            path.display()
        );
        files.push(path);
    }
    files.sort();
    files
}

fn panic_message(p: &(dyn Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}

/// Runs `check` on every seed and regression input of `target`, each under `catch_unwind`, and
/// fails naming every input that broke an invariant.
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = fuzz_dir();
    let seeds = inputs(&fuzz.join("seeds").join(target));
    assert!(
        !seeds.is_empty(),
        "fuzz/seeds/{target}/ holds no input: the replay of {target} would check nothing (fuzz/make_seeds.py writes them)"
    );
    let regressions = inputs(&fuzz.join("regressions").join(target));
    let root = fuzz.parent().unwrap();
    let mut failures = Vec::new();
    for path in seeds.iter().chain(&regressions) {
        let shown = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {shown}: {e}"));
        if let Err(p) = std::panic::catch_unwind(|| check(&data)) {
            failures.push(format!(
                "  {shown} ({} bytes): {}",
                data.len(),
                panic_message(&*p)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "fuzz target {target}: {} of {} inputs broke its checks (fuzz/checks/{target}.rs):\n{}\n\
         reproduce one under the fuzzer: cd fuzz && cargo +nightly fuzz run --sanitizer none {target} ../FILE",
        failures.len(),
        seeds.len() + regressions.len(),
        failures.join("\n")
    );
}

macro_rules! targets {
    ($($target:ident),* $(,)?) => {
        /// Every target replayed here.
        const TARGETS: &[&str] = &[$(stringify!($target)),*];
        $(
            #[test]
            fn $target() {
                replay(stringify!($target), checks::$target::check);
            }
        )*
    };
}

targets!(
    bundle_spec,
    dispatch_sniff,
    image_reference,
    layer_tar,
    manifest_document,
    template
);

/// A new fuzz target, or an input directory with a misspelt name, would otherwise be skipped
/// without a word.
#[test]
fn every_target_and_input_dir_is_replayed() {
    let fuzz = fuzz_dir();
    let mut fuzz_targets: Vec<String> = std::fs::read_dir(fuzz.join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    fuzz_targets.sort();
    let mut known: Vec<&str> = TARGETS.to_vec();
    known.sort();
    assert_eq!(
        fuzz_targets, known,
        "fuzz/fuzz_targets/*.rs and the targets replayed by tests/fuzz_regressions.rs differ"
    );
    for kind in ["seeds", "regressions"] {
        let Ok(rd) = std::fs::read_dir(fuzz.join(kind)) else {
            continue;
        };
        for e in rd {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                assert!(TARGETS.contains(&name.as_str()), "fuzz/{kind}/{name}/ is not a fuzz target's name: its inputs are never replayed");
            } else {
                assert!(
                    name.starts_with('.') || name.ends_with(".md"),
                    "fuzz/{kind}/{name} is outside any target's directory: move it into fuzz/{kind}/<target>/"
                );
            }
        }
    }
}
