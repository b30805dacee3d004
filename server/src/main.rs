//! The `countersign` binary: everything is a subcommand of one program (see [`countersign::cli`]).

/// jemalloc rather than glibc's malloc, for the memory of agents long-waiting for a decision:
/// each holds buffers that are allocated but mostly never written (hyper's 8 KB write buffer,
/// most of its 8 KB read-ahead buffer), and pages nobody writes are not resident. With 10,000
/// waiting, 202 MiB under glibc and 145 MiB under jemalloc (`bash .ci/bench waiters`, the same
/// build otherwise), most likely because glibc keeps its chunk headers beside the chunks and
/// reuses freed (already written) memory first, while jemalloc keeps its metadata apart.
/// mimalloc was tried too and was worse than glibc (337 MiB).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    countersign::cli::main()
}
