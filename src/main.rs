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
        // The filter by -q/-v (or AGENT_FARM_LOG); ANSI colour by --color and NO_COLOR, never
        // into a file or pipe.
        agent_farm::cli::conventions::init_tracing(&cli.output);
    }
    let code = match agent_farm::cli::main(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{}", agent_farm::cli::conventions::render_error(&err));
            agent_farm::error::exit_code_for(&err)
        }
    };
    std::process::exit(code);
}
