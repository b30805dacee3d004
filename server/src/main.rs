//! The `countersign` binary: everything is a subcommand of one program (see [`countersign::cli`]).

fn main() -> std::process::ExitCode {
    countersign::cli::main()
}
