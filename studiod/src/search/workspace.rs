//! Workspaces of a search's experiments. The user's directory is copied
//! once into the search's private `base`. Each experiment's workspace is a
//! tree of hard links to `base`, so unchanged files take no extra space,
//! and its substituted script is written as a fresh file. Nothing ever links
//! to the user's own files, so a script that writes into a file of its
//! workspace cannot change them (it can change `base` and the other
//! experiments' copies of that file, as in StudioML's shared workspace).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use studio_core::hyperparam::substitute;

/// Copies `source` into `target` (which must not exist): files, directories
/// and symbolic links (as links). `skip` is left out, so a Studio home
/// inside the user's directory is not copied into itself.
///
/// NOTE: `.studioml_ignore` is not applied yet, so every file is copied.
pub fn copy_tree(source: &Path, target: &Path, skip: &Path) -> io::Result<u64> {
    let mut bytes = 0;
    std::fs::create_dir_all(target)?;
    let mut pending = vec![(source.to_path_buf(), target.to_path_buf())];
    while let Some((from, to)) = pending.pop() {
        for entry in std::fs::read_dir(&from)? {
            let entry = entry?;
            let path = entry.path();
            if path == skip {
                continue;
            }
            let destination = to.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&path)?, &destination)?;
            } else if kind.is_dir() {
                std::fs::create_dir(&destination)?;
                pending.push((path, destination));
            } else if kind.is_file() {
                bytes += std::fs::copy(&path, &destination)?;
            }
        }
    }
    Ok(bytes)
}

/// Recreates the tree of `base` at `target` with hard links to its files.
pub fn link_tree(base: &Path, target: &Path) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    let mut pending = vec![(base.to_path_buf(), target.to_path_buf())];
    while let Some((from, to)) = pending.pop() {
        for entry in std::fs::read_dir(&from)? {
            let entry = entry?;
            let path = entry.path();
            let destination = to.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&path)?, &destination)?;
            } else if kind.is_dir() {
                std::fs::create_dir(&destination)?;
                pending.push((path, destination));
            } else if kind.is_file() {
                std::fs::hard_link(&path, &destination)?;
            }
        }
    }
    Ok(())
}

/// Builds one experiment's workspace at `target` from `base`, with the
/// scalar `values` substituted into `script` (a path relative to the
/// workspace); returns the workspace's path.
pub fn build(
    base: &Path,
    target: &Path,
    script: &str,
    values: &BTreeMap<String, String>,
) -> io::Result<PathBuf> {
    link_tree(base, target)?;
    let script_path = target.join(script);
    let mut text = std::fs::read_to_string(base.join(script))?;
    for (name, value) in values {
        text = substitute(&text, name, value);
    }
    // The link is replaced, never written through, so `base` keeps the
    // original script.
    std::fs::remove_file(&script_path)?;
    std::fs::write(&script_path, text)?;
    Ok(target.to_path_buf())
}

/// Writes a 1-D float64 array in numpy's `.npy` format (version 1.0), which
/// `np.load` reads.
pub fn write_npy(path: &Path, values: &[f64]) -> io::Result<()> {
    let mut header = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({},), }}",
        values.len()
    );
    // Magic (6) + version (2) + header length (2) + header + '\n' must be a
    // multiple of 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let length = u16::try_from(header.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "npy header too long"))?;
    bytes.extend_from_slice(&length.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn workspaces_share_files_but_not_the_script() {
        let root = tempfile::tempdir().unwrap();
        let user = root.path().join("user");
        std::fs::create_dir_all(user.join("data")).unwrap();
        std::fs::write(user.join("train.py"), "lr = 1\nprint(lr)").unwrap();
        std::fs::write(user.join("data/big.bin"), vec![7u8; 4096]).unwrap();
        std::os::unix::fs::symlink("data/big.bin", user.join("link")).unwrap();
        let home = user.join(".studioml");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("x"), "not copied").unwrap();

        let base = root.path().join("base");
        copy_tree(&user, &base, &home).unwrap();
        assert!(!base.join(".studioml").exists());
        let values = BTreeMap::from([("lr".to_string(), "0.5".to_string())]);
        let workspace = build(&base, &root.path().join("w1"), "train.py", &values).unwrap();

        assert_eq!(
            std::fs::read_to_string(workspace.join("train.py")).unwrap(),
            "lr = 1\nprint(0.5)"
        );
        assert_eq!(
            std::fs::read_to_string(base.join("train.py")).unwrap(),
            "lr = 1\nprint(lr)"
        );
        let linked = std::fs::metadata(workspace.join("data/big.bin")).unwrap();
        let original = std::fs::metadata(user.join("data/big.bin")).unwrap();
        let private = std::fs::metadata(base.join("data/big.bin")).unwrap();
        assert_eq!(linked.ino(), private.ino());
        assert_ne!(linked.ino(), original.ino());
        assert_eq!(
            std::fs::read_link(workspace.join("link")).unwrap(),
            PathBuf::from("data/big.bin")
        );
    }

    #[test]
    fn npy_header_is_aligned() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("w.npy");
        write_npy(&path, &[1.0, 2.5]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_length = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_length) % 64, 0);
        assert_eq!(bytes.len(), 10 + header_length + 16);
        assert_eq!(&bytes[bytes.len() - 8..], &2.5f64.to_le_bytes());
    }
}
