//! Sets BUILD_GIT_COMMIT for `--version` and the `client_telemetry_build_info` metric (not under
//! our settings' prefix: `cargo run` passes it to the process, where it would be an unknown setting):
//! the variable of that name if the build sets it (the Dockerfile's argument), else the short
//! commit being built, else "unknown" (no git, e.g. a source tarball).

use std::process::Command;

const VAR: &str = "BUILD_GIT_COMMIT";

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|out| out.status.success())?;
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string()).filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed={VAR}");
    let given = std::env::var(VAR).ok().filter(|c| !c.is_empty() && c != "unknown");
    let commit = given.or_else(|| git(&["rev-parse", "--short=12", "HEAD"])).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env={VAR}={commit}");
    // Rebuild the version on a new commit: HEAD, or the branch it points to, changes.
    let (Some(git_dir), Some(common_dir)) = (git(&["rev-parse", "--git-dir"]), git(&["rev-parse", "--git-common-dir"]))
    else {
        return;
    };
    for path in [format!("{git_dir}/HEAD"), format!("{common_dir}/refs/heads"), format!("{common_dir}/packed-refs")] {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
