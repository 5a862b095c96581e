//! The volume's lineage: which pod created the volume and when, which pods have started on it
//! since, and whether it changed hands. A StatefulSet promises each pod a volume of its own
//! that follows it across restarts and rescheduling; this makes that promise visible, and a
//! broken one (the volume turning up under another pod's name) loud.
//!
//! It lives in a small JSON file beside the data file (`<data file>.lineage`), replaced at each
//! start (written to a temporary file, synced, renamed over the old one, and the folder
//! synced), so a crash leaves the old lineage or the new one, never a mix. The data file is
//! never touched here: a lineage file that cannot be read, parsed or written gets a warning and
//! a fresh start, and the server goes on.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::json::Json;

/// Starts kept besides the first: the last few, this one included.
const RECENT: usize = 5;

/// One start of a server on the volume: the pod's name and when (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub pod: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// The start that found the volume empty; None when the volume had data before its lineage
    /// was recorded (or the record was lost).
    pub created: Option<Start>,
    /// Starts recorded on this volume, this one included.
    pub starts: u64,
    /// The last [`RECENT`] starts, oldest first: the last is this one.
    pub recent: Vec<Start>,
    /// The start before this one, when it was another pod's: the volume changed hands.
    pub moved_from: Option<Start>,
}

impl Lineage {
    /// Reads the lineage of the volume holding `data_file`, adds this start (`pod`, `at`), and
    /// records it on the volume. `data_len` tells an empty volume from one with data.
    pub fn record_start(data_file: &Path, data_len: u64, pod: &str, at: &str) -> Lineage {
        let path = path_of(data_file);
        let before = match fs::read_to_string(&path) {
            Ok(text) => parse(&text)
                .map_err(|why| {
                    log::warn!(
                        "lineage file {} is not a lineage ({why}): starting a new one; the data file is untouched",
                        path.display()
                    );
                })
                .ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                log::warn!(
                    "cannot read lineage file {}: {e}; starting a new one; the data file is untouched",
                    path.display()
                );
                None
            }
        };
        let this = Start {
            pod: pod.to_string(),
            at: at.to_string(),
        };
        let lineage = match before {
            Some(before) => before.then(this),
            None => Lineage {
                created: (data_len == 0).then(|| this.clone()),
                starts: 1,
                recent: vec![this],
                moved_from: None,
            },
        };
        if let Some(last) = &lineage.moved_from {
            log::warn!(
                "this volume was last used by pod {} (started {}), not by {pod}: a StatefulSet gives each pod a volume of its own, and this one changed hands",
                last.pod,
                last.at
            );
        }
        if let Err(e) = write_durably(&path, &lineage.to_json().to_string()) {
            log::warn!(
                "cannot record this start in lineage file {}: {e}",
                path.display()
            );
        }
        lineage
    }

    /// This lineage with one more start.
    fn then(mut self, this: Start) -> Lineage {
        self.moved_from = self
            .recent
            .last()
            .filter(|last| last.pod != this.pod)
            .cloned();
        self.starts += 1;
        self.recent.push(this);
        let extra = self.recent.len().saturating_sub(RECENT);
        self.recent.drain(..extra);
        self
    }

    /// One line: `created by hello-stateful-2 at <time>; 4 starts, the last by
    /// hello-stateful-2 at <time>`, and the hand-over when there was one.
    pub fn summary(&self) -> String {
        let created = match &self.created {
            Some(c) => format!("created by {} at {}", c.pod, c.at),
            None => "created before its lineage was recorded".into(),
        };
        let plural = if self.starts == 1 { "" } else { "s" };
        let mut line = format!("{created}; {} start{plural}", self.starts);
        if let Some(last) = self.recent.last() {
            line += &format!(", the last by {} at {}", last.pod, last.at);
        }
        if let Some(from) = &self.moved_from {
            line += &format!(
                "; CHANGED HANDS: last used by {} (started {})",
                from.pod, from.at
            );
        }
        line
    }

    /// What the lineage file holds, and `/info` shows (with the summary).
    pub fn to_json(&self) -> Json {
        let start = |s: &Start| {
            Json::object([
                ("pod", Json::String(s.pod.clone())),
                ("at", Json::String(s.at.clone())),
            ])
        };
        Json::object([
            ("created", self.created.as_ref().map_or(Json::Null, start)),
            ("starts", Json::Number(self.starts)),
            (
                "recent",
                Json::Array(self.recent.iter().map(start).collect()),
            ),
            (
                "moved_from",
                self.moved_from.as_ref().map_or(Json::Null, start),
            ),
        ])
    }
}

/// `<data file>.lineage`, beside the data file.
pub fn path_of(data_file: &Path) -> PathBuf {
    let mut name = data_file.file_name().unwrap_or_default().to_os_string();
    name.push(".lineage");
    data_file.with_file_name(name)
}

/// A lineage as the file holds it; anything else is an error saying what is wrong.
fn parse(text: &str) -> Result<Lineage, String> {
    let json = Json::parse(text)?;
    let start = |value: &Json| -> Result<Start, String> {
        let field = |name| {
            value
                .get(name)
                .and_then(Json::as_str)
                .filter(|s| !s.is_empty() && s.len() <= 253)
                .map(str::to_string)
                .ok_or_else(|| format!("a start without its {name}"))
        };
        Ok(Start {
            pod: field("pod")?,
            at: field("at")?,
        })
    };
    let optional = |name| match json.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(value) => start(value).map(Some),
    };
    let recent = match json.get("recent") {
        Some(Json::Array(items)) if !items.is_empty() && items.len() <= RECENT => {
            items.iter().map(start).collect::<Result<Vec<_>, _>>()?
        }
        _ => return Err(format!("no list of 1 to {RECENT} recent starts")),
    };
    let starts = json
        .get("starts")
        .and_then(Json::as_u64)
        .filter(|&n| n >= recent.len() as u64)
        .ok_or("no count of starts as large as the list of recent ones")?;
    Ok(Lineage {
        created: optional("created")?,
        starts,
        recent,
        moved_from: optional("moved_from")?,
    })
}

/// Replaces `path` with `text` so that a crash leaves one or the other whole.
fn write_durably(path: &Path, text: &str) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let temporary = path.with_file_name(name);
    let mut file = File::create(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    let folder = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(folder)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_dir::TempDir;

    #[test]
    fn starts_are_counted_and_a_new_owner_is_flagged() {
        let dir = TempDir::new("lineage");
        let data = dir.path().join("hello");
        let first = Lineage::record_start(&data, 0, "web-2", "T1");
        assert_eq!(
            first.summary(),
            "created by web-2 at T1; 1 start, the last by web-2 at T1"
        );
        let mut last = first;
        for i in 2..=7 {
            last = Lineage::record_start(&data, 10, "web-2", &format!("T{i}"));
        }
        assert_eq!(last.starts, 7);
        assert_eq!(last.recent.len(), RECENT);
        assert_eq!(last.recent[0].at, "T3");
        assert_eq!(last.moved_from, None);
        assert_eq!(last.created.as_ref().map(|c| c.at.as_str()), Some("T1"));
        let moved = Lineage::record_start(&data, 10, "web-0", "T8");
        assert_eq!(
            moved.moved_from.as_ref().map(|s| s.pod.as_str()),
            Some("web-2")
        );
        assert!(
            moved
                .summary()
                .ends_with("; CHANGED HANDS: last used by web-2 (started T7)")
        );
        // Back in the same hands at the next start.
        assert_eq!(
            Lineage::record_start(&data, 10, "web-0", "T9").moved_from,
            None
        );
    }

    #[test]
    fn a_volume_with_data_but_no_lineage_was_created_before_it() {
        let dir = TempDir::new("lineage-old");
        let lineage = Lineage::record_start(&dir.path().join("hello"), 42, "web-0", "T1");
        assert_eq!(lineage.created, None);
        assert!(
            lineage
                .summary()
                .starts_with("created before its lineage was recorded; 1 start")
        );
    }

    #[test]
    fn a_corrupt_lineage_starts_again() {
        let dir = TempDir::new("lineage-corrupt");
        let data = dir.path().join("hello");
        for bad in [
            "",
            "{",
            "[]",
            r#"{"starts":1,"recent":[]}"#,
            r#"{"starts":0,"recent":[{"pod":"a","at":"t"}]}"#,
            r#"{"starts":2,"recent":[{"pod":"","at":"t"}]}"#,
        ] {
            fs::write(path_of(&data), bad).unwrap();
            let lineage = Lineage::record_start(&data, 0, "web-1", "T");
            assert_eq!(lineage.starts, 1, "{bad:?}");
            assert_eq!(lineage.created.map(|c| c.pod), Some("web-1".into()));
        }
        let written = fs::read_to_string(path_of(&data)).unwrap();
        assert_eq!(parse(&written).unwrap().starts, 1);
    }
}
