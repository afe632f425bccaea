//! Test support (feature `test-utils`, never in the product): the one builder of the
//! static jail-probe, the program that the jailer's tests and the host agent's microVM
//! runtime tests run inside a jail in place of the vmm.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Its file name (the jailer names the jail directory after it).
pub const EXEC_NAME: &str = "jail-probe";

/// This crate's `src/bin/jail-probe.rs` built as a static binary (a jail holds no
/// libraries) into `tmp_dir/jail-probe-static/` (callers pass their
/// `CARGO_TARGET_TMPDIR`), once per test process.
pub fn jail_probe(tmp_dir: &Path) -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let dir = tmp_dir.join("jail-probe-static");
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join(EXEC_NAME);
        // Built under a private name, then renamed: test binaries may run in parallel.
        let tmp = dir.join(format!("{EXEC_NAME}.{}", std::process::id()));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/jail-probe.rs");
        // RUSTC if set, else the rustc next to the cargo running the tests, else PATH.
        let rustc = std::env::var("RUSTC").ok().unwrap_or_else(|| {
            std::env::var("CARGO")
                .ok()
                .map(|c| Path::new(&c).with_file_name("rustc"))
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "rustc".into())
        });
        let st = Command::new(rustc)
            .args([
                "--edition",
                "2021",
                "-O",
                "-C",
                "target-feature=+crt-static",
                "-o",
            ])
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("run rustc");
        assert!(st.success(), "building the static jail-probe failed");
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
}
