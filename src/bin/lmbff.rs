//! The `lmbff` command line (see `lmbff --help`).

fn main() {
    std::process::exit(lmbff::cli::main());
}
