//! The `tekfac` command: `tekfac --help` lists the subcommands. With no arguments it trains the
//! default network (an MLP with TEKFAC) on the Fashion-MNIST subset that ships in `data/`.

fn main() -> std::process::ExitCode {
    tekfac::cli::main()
}
