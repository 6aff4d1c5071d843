//! `agora-master-faulty`: the real master with deliberate bugs switched on, for the
//! harness's self-test (`jepsen-tests --self-test`) only. `AGORA_FAULTS` names them
//! (comma-separated, see `agora_master::faults::Faults::NAMES`); every other flag and
//! variable is `agora-master`'s.

use std::process::ExitCode;

use agora_master::faults::Faults;

fn main() -> ExitCode {
    let list = std::env::var("AGORA_FAULTS").unwrap_or_default();
    match Faults::parse(&list) {
        Ok(faults) => agora_master::cli::main(faults),
        Err(e) => {
            eprintln!("agora-master-faulty: AGORA_FAULTS: {e}");
            ExitCode::from(2)
        }
    }
}
