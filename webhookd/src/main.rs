//! The `webhookd` binary: everything it does is in the library
//! (`webhookd::cli` parses the command line and runs the subcommand).

fn main() -> anyhow::Result<()> {
    webhookd::cli::main()
}
