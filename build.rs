//! Makes the binary find libtorch at run time without LD_LIBRARY_PATH, and makes sure the CUDA
//! half of libtorch is really linked when the wheel has it.

fn main() {
    // torch-sys (links = "tch") publishes where it found libtorch.
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    // Nothing in our code references a CUDA symbol, so the linker's --as-needed would drop
    // libtorch_cuda and `--device cuda` would report no GPU even on a GPU machine.
    if std::path::Path::new(&lib_dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
