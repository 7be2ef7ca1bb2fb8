//! A generated part of a hand-written Markdown file, between two markers, so that what is
//! written around it (the analysis) survives a new run. `bench` and `soak` each own such a
//! part of BENCHMARKS.md.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// The markers around one generated part.
pub(crate) struct Markers {
    pub(crate) begin: &'static str,
    pub(crate) end: &'static str,
}

impl Markers {
    /// Puts `generated` between the markers in the file at `path`, keeping the rest of it.
    /// When the file has no such markers, `place(text, marked)` answers the file's new text
    /// from its current one (`None`: there is no file) and the marked part.
    pub(crate) fn write(
        &self,
        path: &Path,
        generated: &str,
        place: impl FnOnce(Option<&str>, &str) -> Result<String>,
    ) -> Result<()> {
        let marked = format!("{}\n{generated}{}", self.begin, self.end);
        let current = fs::read_to_string(path).ok();
        let found = current
            .as_deref()
            .and_then(|text| Some((text, text.find(self.begin)?, text.find(self.end)?)));
        let text = match found {
            Some((text, begin, end)) if begin < end => {
                let after = &text[end + self.end.len()..];
                format!("{}{marked}{after}", &text[..begin])
            }
            _ => place(current.as_deref(), &marked)?,
        };
        fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// A path `BENCHMARKS.md` in an empty folder of its own under the system's temporary one,
/// for a test named `test`.
#[cfg(test)]
pub(crate) fn scratch_file(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("a temporary folder");
    dir.join("BENCHMARKS.md")
}
