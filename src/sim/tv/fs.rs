//! The TV's small in-memory file system: what `sync:` pulls and pushes and
//! what `cat`, `ls` and `screencap FILE` read and write. Files under
//! `/proc` and `/sys` are made from the TV's state when read (see
//! [`TvModel::read`](super::model::TvModel::read)); this holds the rest.

use std::collections::{BTreeMap, BTreeSet};

/// `S_IFREG | 0660`, as files on `/sdcard` look to the shell user.
pub const FILE_MODE: u32 = 0o100_660;
/// `S_IFDIR | 0771`.
pub const DIR_MODE: u32 = 0o040_771;
/// Read-only kernel files (`/proc`, `/sys`): `S_IFREG | 0444`.
pub const KERNEL_FILE_MODE: u32 = 0o100_444;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub data: Vec<u8>,
    pub mode: u32,
    /// Seconds since 1970.
    pub mtime: u32,
}

/// Why a file cannot be read or written; the texts are the errno strings
/// Android's tools print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("No such file or directory")]
    NotFound,
    #[error("Is a directory")]
    IsDirectory,
    #[error("Not a directory")]
    NotDirectory,
    #[error("Permission denied")]
    PermissionDenied,
    #[error("Read-only file system")]
    ReadOnly,
}

/// What the shell user may write: shared storage and adb's scratch directory.
const WRITABLE: [&str; 3] = ["/sdcard/", "/storage/emulated/0/", "/data/local/tmp/"];
const READ_ONLY: [&str; 3] = ["/system/", "/proc/", "/sys/"];

#[derive(Clone, Debug, Default)]
pub struct Fs {
    files: BTreeMap<String, File>,
    dirs: BTreeSet<String>,
}

/// `/a//b/./c/` → `/a/b/c`; relative paths are taken from `/` (adbd's
/// working directory).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) if path.len() > 1 => Some("/"),
        Some(0) | None => None,
        Some(i) => path.get(..i),
    }
}

impl Fs {
    pub fn new() -> Fs {
        let mut fs = Fs::default();
        fs.dirs.insert("/".into());
        fs
    }

    /// Creates a directory and its parents.
    pub fn mkdirs(&mut self, path: &str) {
        let path = normalize(path);
        let mut at = Some(path.as_str());
        while let Some(p) = at {
            self.dirs.insert(p.to_string());
            at = parent(p);
        }
    }

    pub fn is_dir(&self, path: &str) -> bool {
        self.dirs.contains(&normalize(path))
    }

    pub fn get(&self, path: &str) -> Option<&File> {
        self.files.get(&normalize(path))
    }

    /// Writes a file as the shell user, creating its directories (adbd does
    /// so for a push, `fixed_push_mkdir`).
    pub fn write(&mut self, path: &str, file: File) -> Result<(), FsError> {
        let path = normalize(path);
        let slash = format!("{path}/");
        if READ_ONLY.iter().any(|p| slash.starts_with(p)) {
            return Err(FsError::ReadOnly);
        }
        if !WRITABLE.iter().any(|p| path.starts_with(p)) {
            return Err(FsError::PermissionDenied);
        }
        if self.dirs.contains(&path) {
            return Err(FsError::IsDirectory);
        }
        let mut at = parent(&path);
        while let Some(p) = at {
            if self.files.contains_key(p) {
                return Err(FsError::NotDirectory);
            }
            at = parent(p);
        }
        if let Some(dir) = parent(&path) {
            self.mkdirs(dir);
        }
        self.files.insert(path, file);
        Ok(())
    }

    /// Places a file anywhere, for the TV's own files at start.
    pub fn install(&mut self, path: &str, file: File) {
        let path = normalize(path);
        if let Some(dir) = parent(&path) {
            self.mkdirs(dir);
        }
        self.files.insert(path, file);
    }

    /// A directory's entries: name and, for files, the file.
    pub fn list(&self, path: &str) -> Result<Vec<(String, Option<&File>)>, FsError> {
        let path = normalize(path);
        if self.files.contains_key(&path) {
            return Err(FsError::NotDirectory);
        }
        if !self.dirs.contains(&path) {
            return Err(FsError::NotFound);
        }
        let prefix = if path == "/" {
            path
        } else {
            format!("{path}/")
        };
        let direct = |p: &String| {
            p.strip_prefix(&prefix)
                .filter(|rest| !rest.is_empty() && !rest.contains('/'))
                .map(str::to_string)
        };
        let mut out: Vec<(String, Option<&File>)> = self
            .dirs
            .iter()
            .filter_map(|d| direct(d).map(|n| (n, None)))
            .chain(
                self.files
                    .iter()
                    .filter_map(|(p, f)| direct(p).map(|n| (n, Some(f)))),
            )
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Every path held, files and directories.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.dirs
            .iter()
            .chain(self.files.keys())
            .map(String::as_str)
    }

    /// Bytes held in files the shell user wrote, for `df`.
    pub fn bytes_written(&self) -> u64 {
        self.files
            .iter()
            .filter(|(p, _)| WRITABLE.iter().any(|w| p.starts_with(w)))
            .map(|(_, f)| f.data.len() as u64)
            .sum()
    }
}

/// Shell glob match of one path segment: `*` any run, `?` one character.
pub fn glob_segment(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Classic two-pointer wildcard match with backtracking to the last `*`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        match p.get(i) {
            Some('*') => {
                star = Some((i, j));
                i += 1;
            }
            Some(&c) if c == '?' || c == n[j] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    i = si + 1;
                    j = sj + 1;
                    star = Some((si, sj + 1));
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// The paths among `candidates` matching an absolute glob `pattern`,
/// sorted; empty when none does (the shell then keeps the word as it is).
pub fn glob<'a>(pattern: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let want: Vec<&str> = pattern.split('/').collect();
    let mut out: Vec<String> = candidates
        .filter(|c| {
            let got: Vec<&str> = c.split('/').collect();
            got.len() == want.len() && want.iter().zip(&got).all(|(p, n)| glob_segment(p, n))
        })
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &[u8]) -> File {
        File {
            data: data.to_vec(),
            mode: FILE_MODE,
            mtime: 1,
        }
    }

    #[test]
    fn paths_normalize() {
        assert_eq!(
            normalize("/sdcard//Download/./x/../a.txt"),
            "/sdcard/Download/a.txt"
        );
        assert_eq!(normalize("data/local/tmp/"), "/data/local/tmp");
        assert_eq!(normalize("/.."), "/");
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(parent("/a/b"), Some("/a"));
    }

    #[test]
    fn write_creates_directories_and_respects_permissions() {
        let mut fs = Fs::new();
        fs.write("/sdcard/new/dir/f.txt", file(b"x")).unwrap();
        assert!(fs.is_dir("/sdcard/new/dir"));
        assert!(fs.is_dir("/sdcard"));
        assert_eq!(fs.get("/sdcard/new/dir/f.txt").unwrap().data, b"x");
        assert_eq!(fs.write("/system/x", file(b"")), Err(FsError::ReadOnly));
        assert_eq!(
            fs.write("/data/x", file(b"")),
            Err(FsError::PermissionDenied)
        );
        assert_eq!(
            fs.write("/sdcard/new", file(b"")),
            Err(FsError::IsDirectory)
        );
        assert_eq!(
            fs.write("/sdcard/new/dir/f.txt/g", file(b"")),
            Err(FsError::NotDirectory)
        );
        let names: Vec<String> = fs
            .list("/sdcard")
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(names, ["new"]);
        assert_eq!(fs.list("/nope"), Err(FsError::NotFound));
        assert_eq!(fs.bytes_written(), 1);
    }

    #[test]
    fn globs() {
        assert!(glob_segment("thermal_zone*", "thermal_zone12"));
        assert!(glob_segment("*", "x"));
        assert!(glob_segment("a*b*c", "aXXbYc"));
        assert!(!glob_segment("a*b", "aXXc"));
        assert!(glob_segment("?x", "ax"));
        assert!(!glob_segment("temp", "temp2"));
        let paths = [
            "/sys/class/thermal/thermal_zone1/temp",
            "/sys/class/thermal/thermal_zone0/temp",
            "/sys/class/thermal/thermal_zone0/type",
            "/sys/class/thermal/cooling_device0/temp",
        ];
        assert_eq!(
            glob("/sys/class/thermal/thermal_zone*/temp", paths.into_iter()),
            [
                "/sys/class/thermal/thermal_zone0/temp",
                "/sys/class/thermal/thermal_zone1/temp"
            ]
        );
        assert!(glob("/nothing/*", paths.into_iter()).is_empty());
    }
}
