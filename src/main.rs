fn main() {
    std::process::exit(sitelink::cli::main());
}
