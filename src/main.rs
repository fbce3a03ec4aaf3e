//! The `casefile` binary: a thin shell over the library's CLI.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    casefile::cli::main()
}
