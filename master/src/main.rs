//! `agora-master`: one replica of the master quorum (see [`agora_master::cli`]).

fn main() -> std::process::ExitCode {
    agora_master::memory::limit_arenas();
    agora_master::cli::main(agora_master::faults::Faults::default())
}
