//! Compiles the c10d shim (C++17) against the headers of the libtorch that torch-sys found
//! (the torch wheel in `.venv` with `LIBTORCH_USE_PYTORCH=1`, or `LIBTORCH`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=shim");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    // torch-sys (links = "tch") exports its libtorch lib directory to dependents.
    let lib_dir = match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            fail("torch-sys did not report DEP_TCH_LIBTORCH_LIB (is torch-sys a dependency?)")
        }
    };
    let root = lib_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| fail("libtorch lib directory has no parent"));
    let include = root.join("include");
    let api_include = include.join("torch/csrc/api/include");
    if !include
        .join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp")
        .exists()
    {
        fail(&format!(
            "{} has no c10d headers (ProcessGroupGloo.hpp)",
            include.display()
        ));
    }
    let abi = cxx11_abi();
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .std("c++17")
        .warnings(false)
        // torch's headers use C++20 bit-field initialisers, which GCC accepts in C++17 mode.
        .flag_if_supported("-Wno-c++20-extensions")
        .include("shim/gloo_decl")
        .include(&include)
        .include(&api_include)
        .define("USE_C10D_GLOO", None)
        .define("GLOG_USE_GLOG_EXPORT", None)
        .define("_GLIBCXX_USE_CXX11_ABI", Some(abi.as_str()))
        .file("shim/c10d_shim.cpp");
    if std::env::var_os("CARGO_FEATURE_NCCL").is_some() {
        // The CUDA wheel's headers live in site-packages/nvidia/*/include.
        let nvidia = root.parent().map(|p| p.join("nvidia"));
        if let Some(nvidia) = nvidia.filter(|p| p.is_dir()) {
            for entry in std::fs::read_dir(&nvidia).into_iter().flatten().flatten() {
                let dir = entry.path().join("include");
                if dir.is_dir() {
                    build.include(dir);
                }
            }
        }
        if let Ok(cuda) = std::env::var("CUDA_HOME") {
            build.include(Path::new(&cuda).join("include"));
        }
        build
            .define("WD_WITH_NCCL", None)
            .define("USE_C10D_NCCL", None);
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
    }
    build.compile("wd_c10d");
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-lib=dylib=torch");
}

/// `_GLIBCXX_USE_CXX11_ABI` of the libtorch build: `LIBTORCH_CXX11_ABI`, else what the
/// venv's torch reports (as torch-sys asks it), else 1 (every wheel since torch 2.7).
fn cxx11_abi() -> String {
    if let Ok(abi) = std::env::var("LIBTORCH_CXX11_ABI") {
        return abi;
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        for python in ["python", "python3"] {
            let output = Command::new(python)
                .args([
                    "-c",
                    "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))",
                ])
                .output();
            if let Ok(output) = output
                && output.status.success()
            {
                let abi = String::from_utf8_lossy(&output.stdout).trim().to_string();
                if abi == "0" || abi == "1" {
                    return abi;
                }
            }
        }
        fail("LIBTORCH_USE_PYTORCH is set but python could not report torch's C++ ABI");
    }
    "1".to_string()
}

fn fail(message: &str) -> ! {
    eprintln!("worker-distributed build: {message}");
    std::process::exit(1)
}
