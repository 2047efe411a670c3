//! Makes the binary find libtorch at run time without LD_LIBRARY_PATH (its CUDA half too,
//! which is loaded on demand), and compiles `csrc/` (the libtorch calls tch does not bind, and
//! activation checkpointing) against the same PyTorch.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/extras.cpp");
    println!("cargo:rerun-if-changed=csrc/recompute.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.cpp");
    println!("cargo:rerun-if-changed=csrc/int8.cpp");
    println!("cargo:rerun-if-changed=csrc/profile.cpp");
    println!("cargo:rerun-if-changed=csrc/nccl.cpp");
    println!("cargo::rustc-check-cfg=cfg(nccl_plugin)");
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
    let includes: Vec<String> = lines.map(|l| l.trim().to_string()).collect();
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .std("c++17")
        .file("csrc/extras.cpp")
        .file("csrc/recompute.cpp")
        .file("csrc/dist.cpp")
        .file("csrc/int8.cpp")
        .file("csrc/profile.cpp");
    build.define("_GLIBCXX_USE_CXX11_ABI", abi.as_str());
    // This wheel's ATen runs `at::parallel_for` (csrc/extras.cpp) as an OpenMP loop written in its
    // headers: without -fopenmp it runs on one thread. Linked to the wheel's own libgomp, the
    // loop runs on libtorch's thread pool (one OpenMP runtime in the process, not two).
    let gomp = std::path::Path::new(&lib_dir).join("libgomp.so.1");
    if gomp.exists() {
        build.flag("-fopenmp");
        println!("cargo:rustc-link-arg={}", gomp.display());
    } else {
        println!("cargo:warning=no libgomp.so.1 beside libtorch: bertkit's own parallel loops run on one thread");
    }
    // The pip wheel is built with c10d and gloo; its headers declare them only under these.
    build.define("USE_DISTRIBUTED", "1").define("USE_C10D_GLOO", "1").include("csrc/third_party/gloo");
    for include in &includes {
        build.include(include);
    }
    build.compile("bertkit_extras");
    build_nccl_plugin(&build, &includes, &abi, &lib_dir);
    println!("cargo:rustc-link-search=native={lib_dir}");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// Compiles csrc/nccl.cpp into `$OUT_DIR/libbertkit_nccl.so` (linked against libtorch_cuda, for
/// src/dist/nccl.rs to embed) when this PyTorch has a CUDA half and the NCCL and CUDA headers
/// are installed (setup.sh's `nvidia-cuda-crt` and `nvidia-cuda-cccl` complete the wheel's);
/// otherwise says why and builds without it: `--dist-backend nccl` then says so.
fn build_nccl_plugin(build: &cc::Build, includes: &[String], abi: &str, lib_dir: &str) {
    let lib = std::path::Path::new(lib_dir);
    let nvidia = lib.join("../../nvidia");
    let headers = [nvidia.join("nccl/include"), nvidia.join("cu13/include"), nvidia.join("cu13/include/cccl")];
    let needed = [
        (lib.join("libtorch_cuda.so"), "libtorch_cuda.so (a CUDA build of PyTorch)"),
        (headers[0].join("nccl.h"), "nccl.h (nvidia-nccl-cu13)"),
        (headers[1].join("crt/host_config.h"), "crt/host_config.h (pip install nvidia-cuda-crt==13.0.*)"),
        (headers[2].join("nv/target"), "nv/target (pip install nvidia-cuda-cccl==13.0.*)"),
    ];
    if let Some((_, what)) = needed.iter().find(|(path, _)| !path.exists()) {
        println!("cargo:warning=bertkit is built without the NCCL backend: {what} not found");
        return;
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("libbertkit_nccl.so");
    let mut cmd = build.get_compiler().to_command();
    cmd.args(["-shared", "-fPIC", "-std=c++17", "-O2", "-w", "-DUSE_DISTRIBUTED", "-DUSE_C10D_NCCL"])
        .arg(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .args(
            includes
                .iter()
                .chain(headers.iter().map(|h| h.display().to_string()).collect::<Vec<_>>().iter())
                .map(|i| format!("-I{i}")),
        )
        .arg("csrc/nccl.cpp")
        .arg(format!("-L{lib_dir}"))
        .args(["-ltorch_cuda", "-ltorch_cpu", "-lc10_cuda", "-lc10"])
        .arg(format!("-Wl,-rpath,{lib_dir}"))
        .arg("-o")
        .arg(&out);
    let status = cmd.status().expect("running the C++ compiler for csrc/nccl.cpp");
    assert!(status.success(), "compiling csrc/nccl.cpp failed: {status}");
    println!("cargo:rustc-cfg=nccl_plugin");
}
