fn main() {
    std::process::exit(bertkit::cli::main());
}
