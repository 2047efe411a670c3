//! Makes the binary find libtorch at run time without LD_LIBRARY_PATH (its CUDA half too,
//! which is loaded on demand), and compiles `csrc/` (the libtorch calls tch does not bind, and
//! activation checkpointing) against the same PyTorch.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/extras.cpp");
    println!("cargo:rerun-if-changed=csrc/recompute.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.cpp");
    println!("cargo:rerun-if-changed=csrc/bertkit.h");
    // torch-sys (links = "tch") publishes where it found libtorch.
    let lib_dir = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports the libtorch directory");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    // libtorch_cuda is not linked: src/device.rs loads it when a GPU is asked for (linked, it
    // cost every CPU-only run ~400 MB of memory). The rpath above is where it is found.

    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args([
            "-c",
            "import torch; from torch.utils import cpp_extension as c; \
             print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print('\\n'.join(c.include_paths()))",
        ])
        .output()
        .expect("python3 with torch (pip install torch==2.11.0)");
    assert!(out.status.success(), "python3 -c 'import torch' failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let abi = lines.next().unwrap().trim().to_string();
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .std("c++17")
        .file("csrc/extras.cpp")
        .file("csrc/recompute.cpp")
        .file("csrc/dist.cpp");
    build.define("_GLIBCXX_USE_CXX11_ABI", abi.as_str());
    // The pip wheel is built with c10d and gloo; its headers declare them only under these.
    build.define("USE_DISTRIBUTED", "1").define("USE_C10D_GLOO", "1").include("csrc/third_party/gloo");
    for include in lines {
        build.include(include.trim());
    }
    build.compile("bertkit_extras");
    println!("cargo:rustc-link-search=native={lib_dir}");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
