//! The `sinkhost` binary.

fn main() -> std::process::ExitCode {
    sinkhost::cli::main()
}
