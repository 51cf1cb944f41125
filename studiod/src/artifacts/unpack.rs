//! Unpacking a tar.gz artifact into a new directory, rejecting entries that
//! would write outside it.
//!
//! The target must not exist: unpacking never deletes, merges into or
//! rewrites an existing directory (a user's own directory is never touched).
//! Entries go into a temporary sibling that is renamed to the target only
//! when the whole archive was valid, so a rejected archive leaves nothing.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{0} already exists: choose a destination that does not exist yet")]
    TargetExists(String),
    #[error("rejected archive entry {0:?}: absolute paths are not allowed in an artifact")]
    Absolute(String),
    #[error("rejected archive entry {0:?}: '..' is not allowed in an artifact path")]
    ParentDir(String),
    #[error(
        "rejected archive entry {entry:?}: its link target {target:?} points outside the artifact"
    )]
    LinkOutside { entry: String, target: String },
    #[error("rejected archive entry {0:?}: it would be written through a symbolic link")]
    ThroughLink(String),
    #[error("rejected archive entry {0:?}: only files, directories and links are allowed")]
    EntryType(String),
    #[error("cannot unpack into {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Unpacks the tar.gz read from `reader` into `target`, which must not
/// exist. Returns the number of regular files written.
pub fn unpack(reader: impl Read, target: &Path) -> Result<u64, UnpackError> {
    if std::fs::symlink_metadata(target).is_ok() {
        return Err(UnpackError::TargetExists(target.display().to_string()));
    }
    let parent = target
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "artifact".into());
    let staging = parent.join(format!(
        ".{name}.unpacking-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir(&staging).map_err(io_error(&staging))?;

    let result = unpack_entries(reader, &staging);
    match result {
        Ok(files) => {
            std::fs::rename(&staging, target).map_err(|error| {
                let _ = std::fs::remove_dir_all(&staging);
                io_error(target)(error)
            })?;
            Ok(files)
        }
        Err(error) => {
            // The staging directory is ours alone: removing it removes only
            // what this call wrote.
            let _ = std::fs::remove_dir_all(&staging);
            Err(error)
        }
    }
}

fn unpack_entries(reader: impl Read, root: &Path) -> Result<u64, UnpackError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    archive.set_preserve_permissions(false);
    archive.set_overwrite(false);
    let mut files = 0;
    for entry in archive.entries().map_err(io_error(root))? {
        let mut entry = entry.map_err(io_error(root))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let relative = checked_relative(&raw)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let destination = root.join(&relative);
        ensure_no_link_on_the_way(root, &relative, &raw)?;

        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&destination).map_err(io_error(&destination))?;
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => files += 1,
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(io_error(&destination))?
                    .map(|link| link.into_owned())
                    .unwrap_or_default();
                let base = if kind == tar::EntryType::Symlink {
                    relative.parent().map(Path::to_path_buf).unwrap_or_default()
                } else {
                    PathBuf::new()
                };
                if link.is_absolute() || !stays_inside(&base.join(&link)) {
                    return Err(UnpackError::LinkOutside {
                        entry: raw,
                        target: link.display().to_string(),
                    });
                }
                if kind == tar::EntryType::Link {
                    // Hard links name their target relative to the archive
                    // root; make that explicit for the tar crate.
                    let source = root.join(&link);
                    if let Some(parent) = destination.parent() {
                        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
                    }
                    std::fs::hard_link(&source, &destination).map_err(io_error(&destination))?;
                    continue;
                }
            }
            _ => return Err(UnpackError::EntryType(raw)),
        }
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        entry.unpack(&destination).map_err(io_error(&destination))?;
    }
    Ok(files)
}

/// Turns an entry's path into a relative path of normal components, or
/// rejects it.
fn checked_relative(raw: &str) -> Result<PathBuf, UnpackError> {
    let mut relative = PathBuf::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(UnpackError::ParentDir(raw.to_string())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(UnpackError::Absolute(raw.to_string()))
            }
        }
    }
    Ok(relative)
}

/// True when `path`, read lexically, never climbs above its start.
fn stays_inside(path: &Path) -> bool {
    let mut depth = 0i32;
    for component in path.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Rejects an entry whose parent directories include a symbolic link that
/// an earlier entry created, since writing through it could leave the root.
fn ensure_no_link_on_the_way(root: &Path, relative: &Path, raw: &str) -> Result<(), UnpackError> {
    let mut current = root.to_path_buf();
    let parents: Vec<_> = relative.components().collect();
    for component in &parents[..parents.len().saturating_sub(1)] {
        current.push(component);
        if std::fs::symlink_metadata(&current)
            .is_ok_and(|metadata| metadata.file_type().is_symlink())
        {
            return Err(UnpackError::ThroughLink(raw.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw entry name, entry type, and content or link target.
    type CraftedEntry<'a> = (&'a str, tar::EntryType, &'a str);

    /// Builds a tar.gz whose entries have exactly the given raw names,
    /// bypassing the tar crate's own path checks.
    fn crafted(entries: &[CraftedEntry]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, kind, content) in entries {
            let mut header = tar::Header::new_gnu();
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
                header.set_link_name(content).unwrap();
                header.set_size(0);
                header.set_cksum();
                builder.append(&header, std::io::empty()).unwrap();
            } else {
                header.set_size(content.len() as u64);
                header.set_cksum();
                builder.append(&header, content.as_bytes()).unwrap();
            }
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn valid_archive_unpacks() {
        let directory = tempfile::tempdir().unwrap();
        let archive = crafted(&[
            ("a.txt", tar::EntryType::Regular, "a"),
            ("sub/b.txt", tar::EntryType::Regular, "b"),
            ("sub/link", tar::EntryType::Symlink, "b.txt"),
        ]);
        let target = directory.path().join("out");
        assert_eq!(unpack(archive.as_slice(), &target).unwrap(), 2);
        assert_eq!(
            std::fs::read_to_string(target.join("sub/b.txt")).unwrap(),
            "b"
        );
        assert_eq!(
            std::fs::read_to_string(target.join("sub/link")).unwrap(),
            "b"
        );
    }

    #[test]
    fn escaping_entries_are_rejected() {
        let cases: [(&[CraftedEntry], &str); 5] = [
            (&[("../evil.txt", tar::EntryType::Regular, "x")], "'..'"),
            (
                &[("ok/../../evil.txt", tar::EntryType::Regular, "x")],
                "'..'",
            ),
            (
                &[("/tmp/evil.txt", tar::EntryType::Regular, "x")],
                "absolute",
            ),
            (&[("link", tar::EntryType::Symlink, "../../etc")], "outside"),
            (
                &[
                    ("dir", tar::EntryType::Symlink, "."),
                    ("dir/x", tar::EntryType::Regular, "x"),
                ],
                "symbolic link",
            ),
        ];
        for (entries, expected) in cases {
            let directory = tempfile::tempdir().unwrap();
            let target = directory.path().join("nested").join("out");
            let archive = crafted(entries);
            let error = unpack(archive.as_slice(), &target).unwrap_err();
            assert!(error.to_string().contains(expected), "{entries:?}: {error}");
            assert!(!target.exists(), "{entries:?}: target was created");
            assert!(!directory.path().join("evil.txt").exists());
            let left: Vec<_> = std::fs::read_dir(directory.path().join("nested"))
                .unwrap()
                .collect();
            assert!(left.is_empty(), "{entries:?}: left {left:?}");
        }
    }

    #[test]
    fn existing_target_is_left_alone() {
        let directory = tempfile::tempdir().unwrap();
        let target = directory.path().join("mine");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep.txt"), "keep").unwrap();
        let archive = crafted(&[("keep.txt", tar::EntryType::Regular, "other")]);
        let error = unpack(archive.as_slice(), &target).unwrap_err();
        assert!(error.to_string().contains("already exists"), "{error}");
        assert_eq!(
            std::fs::read_to_string(target.join("keep.txt")).unwrap(),
            "keep"
        );
    }
}
