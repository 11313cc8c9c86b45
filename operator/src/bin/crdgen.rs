//! Writes the generated CRDs to `crds/`, `charts/subnet-operator/crds/` and `manifests/crds/`.
//!
//! `crdgen` writes the files; `crdgen --check` exits 1 when a committed file differs;
//! `crdgen --stdout` prints every CRD as one multi-document YAML stream.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use subnet_operator::crd::{CRD_DIRS, crd_files};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let files = match crd_files() {
        Ok(files) => files,
        Err(err) => {
            eprintln!("crdgen: rendering CRDs failed: {err}");
            return ExitCode::FAILURE;
        }
    };
    if mode == "--stdout" {
        for file in &files {
            println!("---\n{}", file.yaml.trim_end());
        }
        return ExitCode::SUCCESS;
    }
    let root = repo_root();
    let mut drift = false;
    for dir in CRD_DIRS {
        let dir = root.join(dir);
        for file in &files {
            let path = dir.join(&file.file_name);
            let current = std::fs::read_to_string(&path).ok();
            if current.as_deref() == Some(file.yaml.as_str()) {
                continue;
            }
            if mode == "--check" {
                eprintln!("crdgen: {} is out of date", path.display());
                drift = true;
                continue;
            }
            if let Err(err) =
                std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, &file.yaml))
            {
                eprintln!("crdgen: writing {} failed: {err}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", path.display());
        }
    }
    if drift {
        eprintln!("crdgen: run `cargo run -p subnet-operator --bin crdgen` to regenerate");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
