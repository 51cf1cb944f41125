//! Packing a file or directory into a deterministic tar.gz, streamed to a
//! temporary file while its SHA-256 is computed.
//!
//! The same content always packs to the same bytes, so that an unchanged
//! directory, or the same data captured by two experiments, gets the same
//! digest and is stored once. To that end entries are sorted by name, tar
//! headers use [`tar::HeaderMode::Deterministic`] (fixed mtime, owner 0,
//! permissions reduced to 0o644 or 0o755), and the gzip header has no
//! timestamp or file name. Restored files therefore keep their content and
//! executable bit, not their times or owners.

use super::store::hex;
use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Name of the file, in any directory of a workspace, that lists paths to
/// leave out of the `workspace` artifact, in gitignore syntax.
pub const IGNORE_FILE: &str = ".studioml_ignore";

/// A packed artifact waiting in a temporary file.
#[derive(Debug)]
pub struct Packed {
    pub temp_path: PathBuf,
    pub digest: String,
    pub size: u64,
    pub files: u64,
    /// Name of the file when the source is one file.
    pub file: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{0} does not exist: check the path")]
    Missing(String),
    #[error("cannot pack {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot list {path}: {message}")]
    Walk { path: String, message: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PackError + '_ {
    move |source| PackError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Counts and hashes the bytes written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        let count = self.inner.write(buffer)?;
        self.hasher.update(&buffer[..count]);
        self.written += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Packs `source` (a file or a directory) into a new file in `temp_dir`.
/// With `honour_ignore_file`, paths listed in `.studioml_ignore` files are
/// left out. `progress` grows by the bytes of each file read. Blocking: run
/// it on a blocking thread.
pub fn pack(
    source: &Path,
    honour_ignore_file: bool,
    temp_dir: &Path,
    progress: &AtomicU64,
) -> Result<Packed, PackError> {
    let metadata = source_metadata(source)?;
    std::fs::create_dir_all(temp_dir).map_err(io_error(temp_dir))?;
    let temp_path = temp_dir.join(format!("pack-{}.tar.gz", uuid::Uuid::new_v4().simple()));
    let result = write_archive(source, &metadata, honour_ignore_file, &temp_path, progress);
    if result.is_err() {
        let _ = std::fs::remove_file(&temp_path);
    }
    let (digest, size, files) = result?;
    let file = (!metadata.is_dir())
        .then(|| {
            source
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .flatten();
    Ok(Packed {
        temp_path,
        digest,
        size,
        files,
        file,
    })
}

/// Reads the metadata of the source to pack; a missing source is
/// [`PackError::Missing`].
fn source_metadata(source: &Path) -> Result<std::fs::Metadata, PackError> {
    std::fs::metadata(source).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => PackError::Missing(source.display().to_string()),
        _ => PackError::Io {
            path: source.display().to_string(),
            source: error,
        },
    })
}

/// Appends the regular file `path` as `name`, with the header that
/// `append_path_with_name` writes in deterministic mode, adding the bytes
/// to `progress` as they are read so a large file shows progress too.
fn append_counted<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    metadata: &std::fs::Metadata,
    progress: &AtomicU64,
) -> Result<(), PackError> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(metadata, tar::HeaderMode::Deterministic);
    let reader = CountingReader {
        inner: file,
        progress,
    };
    builder
        .append_data(&mut header, name, reader)
        .map_err(io_error(path))
}

struct CountingReader<'a, R> {
    inner: R,
    progress: &'a AtomicU64,
}

impl<R: std::io::Read> std::io::Read for CountingReader<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.progress.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

fn write_archive(
    source: &Path,
    metadata: &std::fs::Metadata,
    honour_ignore_file: bool,
    temp_path: &Path,
    progress: &AtomicU64,
) -> Result<(String, u64, u64), PackError> {
    let output = std::fs::File::create(temp_path).map_err(io_error(temp_path))?;
    let hashing = HashingWriter {
        inner: std::io::BufWriter::with_capacity(256 * 1024, output),
        hasher: Sha256::new(),
        written: 0,
    };
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .write(hashing, flate2::Compression::fast());
    let mut builder = tar::Builder::new(gzip);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);

    let mut files = 0u64;
    if metadata.is_dir() {
        for (path, name) in sorted_entries(source, honour_ignore_file)? {
            let metadata = std::fs::symlink_metadata(&path).map_err(io_error(&path))?;
            if metadata.is_file() {
                append_counted(&mut builder, &path, &name, &metadata, progress)?;
                files += 1;
            } else {
                builder
                    .append_path_with_name(&path, &name)
                    .map_err(io_error(&path))?;
            }
        }
    } else {
        let name = source
            .file_name()
            .ok_or_else(|| PackError::Missing(source.display().to_string()))?;
        append_counted(&mut builder, source, Path::new(name), metadata, progress)?;
        files = 1;
    }

    let gzip = builder.into_inner().map_err(io_error(temp_path))?;
    let mut hashing = gzip.finish().map_err(io_error(temp_path))?;
    hashing.flush().map_err(io_error(temp_path))?;
    let output = hashing
        .inner
        .into_inner()
        .map_err(|error| io_error(temp_path)(error.into_error()))?;
    output.sync_all().map_err(io_error(temp_path))?;
    Ok((hex(&hashing.hasher.finalize()), hashing.written, files))
}

/// Hashes what packing `source` would read, without reading file contents:
/// each entry's name, type, size, mode, modification time and link target,
/// plus the packing options. Equal fingerprints let a capture reuse the
/// digest of an earlier pack instead of packing again. Also returns the
/// bytes of the regular files that packing would read.
///
/// NOTE: a file rewritten with the same size within the same nanosecond
/// timestamp keeps its fingerprint, as with make or rsync's quick check.
pub fn fingerprint(source: &Path, honour_ignore_file: bool) -> Result<(String, u64), PackError> {
    use std::os::unix::fs::MetadataExt;
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "v2 ignore={honour_ignore_file}\n{}\n",
        source.display()
    ));
    let metadata = source_metadata(source)?;
    let entries = if metadata.is_dir() {
        sorted_entries(source, honour_ignore_file)?
    } else {
        vec![(
            source.to_path_buf(),
            PathBuf::from(source.file_name().unwrap_or_default()),
        )]
    };
    let mut total = 0;
    for (path, name) in entries {
        let metadata = std::fs::symlink_metadata(&path).map_err(io_error(&path))?;
        if metadata.is_file() {
            total += metadata.len();
        }
        let link = if metadata.file_type().is_symlink() {
            std::fs::read_link(&path).map_err(io_error(&path))?
        } else {
            PathBuf::new()
        };
        // The change time and inode catch a rewrite that kept the size and
        // had its modification time set back (`touch -d`, `cp -p`,
        // `rsync -t`): no tool can set ctime.
        hasher.update(format!(
            "{}\0{:o}\0{}\0{}.{}\0{}.{}\0{}:{}\0{}\n",
            name.display(),
            metadata.mode(),
            metadata.len(),
            metadata.mtime(),
            metadata.mtime_nsec(),
            metadata.ctime(),
            metadata.ctime_nsec(),
            metadata.dev(),
            metadata.ino(),
            link.display()
        ));
    }
    Ok((hex(&hasher.finalize()), total))
}

/// Lists the entries under `root` in name order, with their path inside the
/// archive, without following symbolic links.
fn sorted_entries(
    root: &Path,
    honour_ignore_file: bool,
) -> Result<Vec<(PathBuf, PathBuf)>, PackError> {
    let mut walker = ignore::WalkBuilder::new(root);
    walker
        .standard_filters(false)
        .follow_links(false)
        .sort_by_file_name(|left, right| left.cmp(right));
    if honour_ignore_file {
        // Inside a git work tree, a workspace leaves out what git leaves out
        // (build outputs, virtual environments) and the `.git` directory
        // itself, whose commit is recorded on the experiment.
        // `.studioml_ignore` takes precedence, so `!target/model.bin` there
        // brings a file back.
        walker
            .add_custom_ignore_filename(IGNORE_FILE)
            .git_ignore(true)
            .git_exclude(true)
            .parents(true)
            .filter_entry(|entry| entry.file_name() != ".git");
    }
    let mut entries = Vec::new();
    for entry in walker.build() {
        let entry = entry.map_err(|error| PackError::Walk {
            path: root.display().to_string(),
            message: error.to_string(),
        })?;
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path().to_path_buf();
        let Ok(name) = path.strip_prefix(root).map(Path::to_path_buf) else {
            continue;
        };
        entries.push((path, name));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack_dir(source: &Path, ignore: bool) -> Packed {
        let temp = source.parent().unwrap().join("tmp");
        pack(source, ignore, &temp, &AtomicU64::new(0)).unwrap()
    }

    #[test]
    fn same_content_packs_to_same_digest() {
        let directory = tempfile::tempdir().unwrap();
        let source = directory.path().join("data");
        std::fs::create_dir_all(source.join("b")).unwrap();
        std::fs::write(source.join("a.txt"), "a").unwrap();
        std::fs::write(source.join("b/c.txt"), "c").unwrap();
        let first = pack_dir(&source, false);

        // The same files written again, later, give the same digest.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(source.join("a.txt"), "a").unwrap();
        let second = pack_dir(&source, false);
        assert_eq!(first.digest, second.digest);
        assert_eq!(first.files, 2);

        std::fs::write(source.join("a.txt"), "changed").unwrap();
        assert_ne!(pack_dir(&source, false).digest, first.digest);
    }

    /// The archive is the one `append_path_with_name` writes, so blobs
    /// packed before progress was counted per byte keep their digests.
    #[test]
    fn counted_files_match_the_tar_crate() {
        let directory = tempfile::tempdir().unwrap();
        let source = directory.path().join("data");
        let long = "n".repeat(150);
        std::fs::create_dir_all(source.join(&long)).unwrap();
        std::fs::write(source.join("a.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            source.join("a.sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(source.join(&long).join("big.bin"), vec![7u8; 300_000]).unwrap();
        std::os::unix::fs::symlink("a.sh", source.join("link")).unwrap();

        let progress = AtomicU64::new(0);
        let temp = directory.path().join("tmp");
        let packed = pack(&source, false, &temp, &progress).unwrap();
        assert_eq!(progress.load(Ordering::Relaxed), 300_000 + 10);

        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Deterministic);
        builder.follow_symlinks(false);
        for (path, name) in sorted_entries(&source, false).unwrap() {
            builder.append_path_with_name(&path, &name).unwrap();
        }
        let expected = builder.into_inner().unwrap();
        let mut actual = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&packed.temp_path).unwrap()),
            &mut actual,
        )
        .unwrap();
        assert_eq!(actual.len(), expected.len());
        assert!(actual == expected, "the tar streams differ");
    }

    #[test]
    fn ignore_file_leaves_paths_out() {
        let directory = tempfile::tempdir().unwrap();
        let source = directory.path().join("ws");
        std::fs::create_dir_all(source.join("data")).unwrap();
        std::fs::write(source.join("train.py"), "print(1)").unwrap();
        std::fs::write(source.join("data/big.bin"), "x").unwrap();
        std::fs::write(source.join("secret.key"), "k").unwrap();
        std::fs::write(source.join(IGNORE_FILE), "data/\n*.key\n").unwrap();

        let packed = pack_dir(&source, true);
        let names = archive_names(&packed.temp_path);
        assert!(names.contains(&"train.py".to_string()), "{names:?}");
        assert!(
            !names.iter().any(|name| name.starts_with("data")),
            "{names:?}"
        );
        assert!(!names.contains(&"secret.key".to_string()), "{names:?}");

        let unfiltered = archive_names(&pack_dir(&source, false).temp_path);
        assert!(unfiltered.contains(&"secret.key".to_string()));
    }

    #[test]
    fn gitignore_and_git_directory_are_left_out() {
        let directory = tempfile::tempdir().unwrap();
        let source = directory.path().join("ws");
        std::fs::create_dir_all(source.join("target/debug")).unwrap();
        std::fs::create_dir_all(source.join(".git/objects")).unwrap();
        std::fs::write(source.join("train.py"), "print(1)").unwrap();
        std::fs::write(source.join("target/debug/big.bin"), "x").unwrap();
        std::fs::write(source.join("target/model.bin"), "m").unwrap();
        std::fs::write(source.join(".git/objects/pack"), "p").unwrap();
        std::fs::write(source.join(".gitignore"), "/target\n").unwrap();
        std::fs::write(source.join(IGNORE_FILE), "!/target\n/target/debug\n").unwrap();

        let names = archive_names(&pack_dir(&source, true).temp_path);
        assert!(names.contains(&"train.py".to_string()), "{names:?}");
        assert!(names.contains(&".gitignore".to_string()), "{names:?}");
        assert!(names.contains(&"target/model.bin".to_string()), "{names:?}");
        assert!(
            !names.iter().any(|name| name.starts_with("target/debug")),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|name| name.starts_with(".git/")),
            "{names:?}"
        );

        std::fs::remove_file(source.join(IGNORE_FILE)).unwrap();
        let names = archive_names(&pack_dir(&source, true).temp_path);
        assert!(
            !names.iter().any(|name| name.starts_with("target")),
            "{names:?}"
        );
    }

    #[test]
    fn fingerprint_sees_rewrite_with_old_mtime() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("small.txt");
        std::fs::write(&file, "aaaa").unwrap();
        let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
        let (before, _) = fingerprint(directory.path(), true).unwrap();

        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, "bbbb").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        let (after, _) = fingerprint(directory.path(), true).unwrap();
        assert_ne!(before, after);
    }

    #[test]
    fn single_file_and_trailing_slash() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("snapshot.tar.gz");
        std::fs::write(&file, "bytes").unwrap();
        let packed = pack_dir(&file, false);
        assert_eq!(packed.file.as_deref(), Some("snapshot.tar.gz"));
        assert_eq!(archive_names(&packed.temp_path), ["snapshot.tar.gz"]);

        let source = directory.path().join("d");
        std::fs::create_dir(&source).unwrap();
        std::fs::write(source.join("x"), "x").unwrap();
        let with_slash = PathBuf::from(format!("{}/", source.display()));
        assert_eq!(
            pack_dir(&with_slash, false).digest,
            pack_dir(&source, false).digest
        );
        assert_eq!(
            archive_names(&pack_dir(&with_slash, false).temp_path),
            ["x"]
        );
    }

    #[test]
    fn fingerprint_follows_changes() {
        let directory = tempfile::tempdir().unwrap();
        let source = directory.path().join("d");
        std::fs::create_dir(&source).unwrap();
        std::fs::write(source.join("a"), "a").unwrap();
        let (first, bytes) = fingerprint(&source, false).unwrap();
        assert_eq!(bytes, 1);
        assert_eq!(first, fingerprint(&source, false).unwrap().0);
        std::fs::write(source.join("b"), "b").unwrap();
        assert_ne!(first, fingerprint(&source, false).unwrap().0);
    }

    #[test]
    fn missing_source_is_reported() {
        let directory = tempfile::tempdir().unwrap();
        let error = pack(
            &directory.path().join("nope"),
            false,
            directory.path(),
            &AtomicU64::new(0),
        )
        .unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }

    fn archive_names(path: &Path) -> Vec<String> {
        let file = std::fs::File::open(path).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        archive
            .entries()
            .unwrap()
            .map(|entry| entry.unwrap().path().unwrap().display().to_string())
            .collect()
    }
}
