//! Build information for `/version`: the commit this build is made from
//! (`AGORA_GIT_SHA`), unless the environment sets it, when git can tell.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR")?)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=AGORA_GIT_SHA");
    if std::env::var_os("AGORA_GIT_SHA").is_some() {
        return; // read as it is by option_env!
    }
    // Built again when the checkout moves to another commit.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let dir = Path::new(&dir);
        for file in ["HEAD", "logs/HEAD"] {
            if dir.join(file).is_file() {
                println!("cargo:rerun-if-changed={}", dir.join(file).display());
            }
        }
    }
    if let Some(sha) = git(&["rev-parse", "HEAD"]) {
        println!("cargo:rustc-env=AGORA_GIT_SHA={sha}");
    }
}
