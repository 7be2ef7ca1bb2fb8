//! The commit the binary is built from, as `EMPORIUM_COMMIT` for `emporium_build_info`:
//! the variable itself when the build is given one (a build from a source archive),
//! else `git rev-parse HEAD`; neither, and the metric says `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=EMPORIUM_COMMIT");
    let given = std::env::var("EMPORIUM_COMMIT")
        .ok()
        .filter(|c| !c.is_empty());
    if let Some(commit) = given.or_else(head) {
        println!("cargo:rustc-env=EMPORIUM_COMMIT={commit}");
    }
}

/// HEAD's commit (12 hex digits), watching what moves it: HEAD itself (a checkout) and
/// the branch it names (a commit), loose or packed.
fn head() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = ["HEAD", "packed-refs"]
        .into_iter()
        .map(str::to_owned)
        .chain(branch);
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(commit)
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}
