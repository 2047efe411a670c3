//! Makes the binary find libtorch at run time without LD_LIBRARY_PATH, makes sure the CUDA
//! half of libtorch is really linked when the wheel has it, and compiles `csrc/extras.cpp`
//! (the libtorch calls tch does not bind) against the same PyTorch.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/extras.cpp");
    // torch-sys (links = "tch") publishes where it found libtorch.
    let lib_dir = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports the libtorch directory");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    // Nothing in our code references a CUDA symbol, so the linker's --as-needed would drop
    // libtorch_cuda and `--device cuda` would report no GPU even on a GPU machine.
    if std::path::Path::new(&lib_dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }

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
    build.cpp(true).pic(true).warnings(false).std("c++17").file("csrc/extras.cpp");
    build.define("_GLIBCXX_USE_CXX11_ABI", abi.as_str());
    for include in lines {
        build.include(include.trim());
    }
    build.compile("bertkit_extras");
    println!("cargo:rustc-link-search=native={lib_dir}");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
