use clap::Parser;

fn main() {
    // The supervisor agent-farm starts its commands under: no parsing, no logging.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == agent_farm::supervise::SUBCOMMAND)
    {
        std::process::exit(agent_farm::supervise::main(&args[2..]));
    }
    let cli = agent_farm::cli::Cli::parse();
    if !matches!(cli.command, agent_farm::cli::Command::SimAgent { .. }) {
        let filter = tracing_subscriber::EnvFilter::try_from_env("AGENT_FARM_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let code = match agent_farm::cli::main(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            agent_farm::error::exit_code_for(&err)
        }
    };
    std::process::exit(code);
}
