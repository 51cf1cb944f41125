//! Embeds the Python client package (`python/studio`) into studiod, which
//! writes it under the Studio home and puts it on every experiment's
//! `PYTHONPATH`.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("..").join("python").join("studio");
    println!("cargo:rerun-if-changed={}", root.display());

    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();

    let mut code = String::from("/// Files of the Python client: path inside the package, contents.\npub const FILES: &[(&str, &str)] = &[\n");
    for (relative, absolute) in files {
        writeln!(code, "    ({relative:?}, include_str!({absolute:?})),")
            .expect("writing to a String");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    std::fs::write(out.join("python_client.rs"), code).expect("write python_client.rs");
}

fn collect(root: &Path, directory: &Path, files: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name != "__pycache__") {
                collect(root, &path, files);
            }
        } else if path.extension().is_some_and(|extension| extension == "py") {
            let relative = path.strip_prefix(root).expect("inside root");
            files.push((
                relative.to_string_lossy().into_owned(),
                path.canonicalize()
                    .expect("readable path")
                    .to_string_lossy()
                    .into_owned(),
            ));
        }
    }
}
