//! The fuzz targets. Each is a `fn(&[u8])` that must never panic (the plain functions
//! below, for any other harness), run by the engine with a feature recorder.

use crate::engine::{Features, Target};

pub mod apply;
pub mod messages;
pub mod resources;

/// Every target, in the order `run all` runs them.
pub static TARGETS: [Target; 3] = [
    Target {
        name: "resources",
        about: "resource text parser and arithmetic against a naive model",
        run: resources::run,
        seeds: resources::seeds,
        regressions: resources::regressions,
        dictionary: resources::DICTIONARY,
        max_len: 4096,
        custom_mutator: None,
        describe: None,
    },
    Target {
        name: "apply",
        about: "registry command sequences: invariants, rejections change nothing",
        run: apply::run,
        seeds: apply::seeds,
        regressions: apply::regressions,
        dictionary: &[],
        max_len: 1024,
        custom_mutator: None,
        describe: Some(apply::describe),
    },
    Target {
        name: "messages",
        about: "inbound gRPC requests: prost decode, then the master's convert layer",
        run: messages::run,
        seeds: messages::seeds,
        regressions: messages::regressions,
        dictionary: messages::DICTIONARY,
        max_len: 4096,
        custom_mutator: Some(messages::mutator),
        describe: Some(messages::describe),
    },
];

/// The target named `name`.
pub fn by_name(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Target `resources` on `data`.
pub fn resources(data: &[u8]) {
    resources::run(data, &mut Features::new());
}

/// Target `apply` on `data`.
pub fn apply(data: &[u8]) {
    apply::run(data, &mut Features::new());
}

/// Target `messages` on `data`.
pub fn messages(data: &[u8]) {
    messages::run(data, &mut Features::new());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn seeds_run_clean() {
        for t in &TARGETS {
            for (name, data) in (t.seeds)() {
                assert!(data.len() <= t.max_len, "{}: seed {name} too long", t.name);
                (t.run)(&data, &mut Features::new());
            }
        }
    }

    /// The committed corpus is what `agora-fuzz seed` writes (the layouts of `apply` and
    /// `resources` seeds are this crate's own; `messages` seeds embed other crates'
    /// encodings, so only their presence is checked).
    #[test]
    fn committed_corpus_holds_the_seeds_and_regressions() {
        let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for t in &TARGETS {
            let dir = corpus.join(t.name);
            let files = (t.seeds)()
                .into_iter()
                .map(|(n, d)| (format!("seed-{n}"), d))
                .chain(
                    (t.regressions)()
                        .into_iter()
                        .map(|(n, d)| (format!("regression-{n}"), d)),
                );
            for (name, data) in files {
                let path = dir.join(&name);
                let committed = std::fs::read(&path).unwrap_or_else(|e| {
                    panic!("{}: {e}; run `agora-fuzz seed {}`", path.display(), t.name)
                });
                assert!(committed.len() < 4096, "{} is 4 KB or more", path.display());
                if t.name != "messages" {
                    assert!(
                        committed == data,
                        "{} is stale; run `agora-fuzz seed {}`",
                        path.display(),
                        t.name
                    );
                }
            }
        }
    }
}
