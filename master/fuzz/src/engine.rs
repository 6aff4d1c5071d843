//! The fuzzing loop: load a corpus, then until the time is up pick an entry, mutate it,
//! run the target under `catch_unwind`, keep the input if it showed a new feature, and stop
//! at the first panic with the input written to `artifacts/<target>/crash-<hash>`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::mutate::{mutate_bytes, Rng};

/// The structural signal of one execution: ids of what the target reached (a command
/// kind and its result, a decode error, the field a validation named), the order in
/// which it reached them (pairs of consecutive ids) and how often (bucketed counts).
#[derive(Default)]
pub struct Features {
    hits: Vec<u64>,
    last: u64,
}

impl Features {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the run reached `id`.
    pub fn hit(&mut self, id: u64) {
        self.hits.push(id);
        self.hits.push(mix(self.last.rotate_left(17) ^ id) | 1);
        self.last = id;
    }

    /// Records `id` alone, outside the order of events (a state reached, not a step).
    pub fn note(&mut self, id: u64) {
        self.hits.push(id);
    }

    /// Records a named event.
    pub fn tag(&mut self, tag: &str) {
        self.hit(hash_str(tag));
    }

    /// Records a named event with a small value (a count, a variant).
    pub fn tag_n(&mut self, tag: &str, n: u64) {
        self.hit(hash_str(tag) ^ mix(n.wrapping_add(1)));
    }

    /// Records a named event with a text value (an error message with its digits taken
    /// out, so "tasks[3]" and "tasks[7]" are one feature).
    pub fn tag_text(&mut self, tag: &str, text: &str) {
        let mut h = hash_str(tag);
        for b in text.bytes().filter(|b| !b.is_ascii_digit()) {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        self.hit(h);
    }

    /// The run's features: each id, and each id with its count bucketed as AFL does.
    fn finish(mut self) -> Vec<u64> {
        self.hits.sort_unstable();
        let mut out = Vec::with_capacity(self.hits.len());
        let mut i = 0;
        while i < self.hits.len() {
            let id = self.hits[i];
            let mut j = i;
            while j < self.hits.len() && self.hits[j] == id {
                j += 1;
            }
            let bucket = match j - i {
                1 => 0,
                2 => 1,
                3 => 2,
                4..=7 => 3,
                8..=15 => 4,
                16..=31 => 5,
                32..=127 => 6,
                _ => 7,
            };
            out.push(id);
            if bucket > 0 {
                out.push(mix(id ^ bucket));
            }
            i = j;
        }
        out
    }
}

/// A 64-bit finalizer (from splitmix64).
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a of a string.
pub fn hash_str(s: &str) -> u64 {
    hash_bytes(s.as_bytes())
}

/// FNV-1a, the name of artifacts and minimized corpus files.
pub fn hash_bytes(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// A structure-aware mutation a target adds to the byte-level ones: None when it does
/// not apply to this input.
pub type CustomMutator = fn(&[u8], &[u8], &[&[u8]], &mut Rng, usize) -> Option<Vec<u8>>;

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    /// Must never panic; reports what it reached in `Features`.
    pub run: fn(&[u8], &mut Features),
    /// Valid examples, named, for the committed corpus.
    pub seeds: fn() -> Vec<(String, Vec<u8>)>,
    /// Inputs of findings, named, kept in the committed corpus so that they are replayed
    /// on every run.
    pub regressions: fn() -> Vec<(String, Vec<u8>)>,
    /// Tokens of the input's language, inserted by the mutator.
    pub dictionary: &'static [&'static [u8]],
    pub max_len: usize,
    pub custom_mutator: Option<CustomMutator>,
    /// What an input means, for people (`replay --describe`).
    pub describe: Option<fn(&[u8]) -> String>,
}

/// How `run` behaves.
pub struct Options {
    pub duration: Duration,
    pub seed: u64,
    pub corpus: PathBuf,
    pub artifacts: PathBuf,
    /// After the run, write a smallest-first cover of every feature here.
    pub minimize_into: Option<PathBuf>,
    /// Record every distinct crash (by panic location) and go on, instead of stopping.
    pub keep_going: bool,
    /// An execution slower than this is written to `artifacts` as `slow-<hash>`.
    pub slow: Duration,
    /// Print a status line this often (never when None).
    pub status_every: Option<Duration>,
}

/// What a run did.
pub struct Report {
    pub execs: u64,
    pub elapsed: Duration,
    pub corpus: usize,
    pub features: usize,
    pub crashes: Vec<PathBuf>,
    pub slow: usize,
}

impl Report {
    pub fn execs_per_sec(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The last panic: what tells it apart from other crashes, and its report (message,
/// location and, for a crash not seen before, the backtrace), captured by our hook.
static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);

/// Keys of the crashes already reported: their backtrace is not captured again (that
/// takes milliseconds, and `--keep-going` meets known crashes often).
static KNOWN_CRASHES: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Replaces the default panic hook (which would print every caught panic) with one that
/// records the panic for the report.
pub fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("panic");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let key = crash_key(&location, message);
        let known = KNOWN_CRASHES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|k| k.contains(&key));
        let report = if known {
            format!("{info}")
        } else {
            let bt = std::backtrace::Backtrace::force_capture();
            format!("{info}\nstack backtrace:\n{bt}")
        };
        *LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()) = Some((key, report));
    }));
}

/// What tells two crashes apart: the panic's location and the start of the first line of
/// its message, without digits (assertion messages put what varies on later lines).
fn crash_key(location: &str, message: &str) -> String {
    let first: String = message
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(60)
        .collect();
    format!("{location} {first}")
}

fn remember_crash(key: &str) {
    KNOWN_CRASHES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(key.to_string());
}

/// A panic of a target: what tells it apart, and its report.
pub struct Crash {
    pub key: String,
    pub report: String,
}

/// Runs `target` on `input`, turning a panic into a [`Crash`].
pub fn execute(target: &Target, input: &[u8]) -> Result<Vec<u64>, Crash> {
    let mut features = Features::new();
    let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input, &mut features)));
    match result {
        Ok(()) => Ok(features.finish()),
        Err(_) => {
            let (key, report) = LAST_PANIC
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| ("unknown".into(), "a panic without a report".into()));
            Err(Crash { key, report })
        }
    }
}

/// Every file of `dir` (not recursive), sorted by name; empty when there is no `dir`.
pub fn read_dir_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

fn write_artifact(dir: &Path, prefix: &str, input: &[u8]) -> PathBuf {
    let path = dir.join(format!("{prefix}-{:016x}", hash_bytes(input)));
    if let Err(e) = fs::create_dir_all(dir).and_then(|()| fs::write(&path, input)) {
        eprintln!("cannot write {}: {e}", path.display());
    }
    path
}

struct Entry {
    data: Vec<u8>,
    features: Vec<u64>,
}

/// Fuzzes `target` for `opts.duration`.
pub fn run(target: &Target, opts: &Options) -> Report {
    let start = Instant::now();
    let mut rng = Rng::new(opts.seed);
    let mut seen: HashSet<u64> = HashSet::new();
    let mut corpus: Vec<Entry> = Vec::new();
    let mut crashes: Vec<PathBuf> = Vec::new();
    let mut crash_keys: HashMap<String, PathBuf> = HashMap::new();
    let mut slow = 0usize;
    let mut execs = 0u64;

    let mut initial: Vec<(Option<PathBuf>, Vec<u8>)> = read_dir_files(&opts.corpus)
        .into_iter()
        .map(|(p, b)| (Some(p), b))
        .collect();
    if initial.is_empty() {
        println!(
            "{}: no corpus in {}; starting from the built-in seeds",
            target.name,
            opts.corpus.display()
        );
        initial = (target.seeds)()
            .into_iter()
            .chain((target.regressions)())
            .map(|(_, b)| (None, b))
            .collect();
    }
    initial.push((None, Vec::new()));

    // What to do with one execution's outcome; false: stop.
    let mut consider = |input: Vec<u8>,
                        outcome: Result<Vec<u64>, Crash>,
                        took: Duration,
                        corpus: &mut Vec<Entry>,
                        seen: &mut HashSet<u64>|
     -> bool {
        if took > opts.slow {
            slow += 1;
            let path = write_artifact(&opts.artifacts, "slow", &input);
            eprintln!(
                "{}: slow input ({} ms), written to {}",
                target.name,
                took.as_millis(),
                path.display()
            );
        }
        match outcome {
            Ok(features) => {
                let mut new = false;
                for &f in &features {
                    new |= seen.insert(f);
                }
                if new && corpus.len() < 50_000 {
                    corpus.push(Entry {
                        data: input,
                        features,
                    });
                }
                true
            }
            Err(Crash { key, report }) => {
                if crash_keys.contains_key(&key) {
                    return true; // A known crash (only with keep_going).
                }
                remember_crash(&key);
                let path = write_artifact(&opts.artifacts, "crash", &input);
                eprintln!(
                    "\n{}: CRASH, input written to {}\n{}\n(replay: agora-fuzz replay {} {})\n",
                    target.name,
                    path.display(),
                    report.trim_end(),
                    target.name,
                    path.display()
                );
                crash_keys.insert(key, path.clone());
                crashes.push(path);
                opts.keep_going
            }
        }
    };

    let mut stop = false;
    for (path, input) in initial {
        let t = Instant::now();
        let outcome = execute(target, &input);
        execs += 1;
        if let (Err(_), Some(path)) = (&outcome, path) {
            eprintln!(
                "{}: corpus file {} crashes: a regression, or a finding not fixed yet",
                target.name,
                path.display()
            );
        }
        if !consider(input, outcome, t.elapsed(), &mut corpus, &mut seen) {
            stop = true;
            break;
        }
    }

    let deadline = start + opts.duration;
    let mut next_status = opts.status_every.map(|d| Instant::now() + d);
    while !stop && Instant::now() < deadline {
        // Half the time one of the newest entries: they are where the progress is.
        let n = corpus.len().max(1);
        let i = if rng.one_in(2) {
            n - 1 - rng.below(n.min(64))
        } else {
            rng.below(n)
        };
        let j = rng.below(n);
        let (parent, other): (&[u8], &[u8]) = match (corpus.get(i), corpus.get(j)) {
            (Some(a), Some(b)) => (&a.data, &b.data),
            _ => (&[], &[]),
        };
        let child = target
            .custom_mutator
            .filter(|_| rng.below(3) > 0)
            .and_then(|m| m(parent, other, target.dictionary, &mut rng, target.max_len))
            .unwrap_or_else(|| {
                mutate_bytes(parent, other, target.dictionary, &mut rng, target.max_len)
            });
        let t = Instant::now();
        let outcome = execute(target, &child);
        execs += 1;
        if !consider(child, outcome, t.elapsed(), &mut corpus, &mut seen) {
            stop = true;
        }
        if let (Some(at), Some(every)) = (next_status, opts.status_every) {
            if Instant::now() >= at {
                println!(
                    "{}: {} s, {} execs, corpus {}, {} features",
                    target.name,
                    start.elapsed().as_secs(),
                    execs,
                    corpus.len(),
                    seen.len()
                );
                next_status = Some(at + every);
            }
        }
    }

    if let Some(dir) = &opts.minimize_into {
        let written = minimize_into(target, &corpus, dir);
        println!(
            "{}: wrote a cover of {} inputs to {}",
            target.name,
            written,
            dir.display()
        );
    }
    Report {
        execs,
        elapsed: start.elapsed(),
        corpus: corpus.len(),
        features: seen.len(),
        crashes,
        slow,
    }
}

/// Writes the smallest inputs that together show every feature the corpus shows (greedy,
/// smallest first) as `min-<hash>` into `dir`, and removes older `min-*` files there that
/// are not in the cover (seeds and regressions are kept). Returns how many it wrote.
fn minimize_into(target: &Target, corpus: &[Entry], dir: &Path) -> usize {
    let mut order: Vec<&Entry> = corpus.iter().collect();
    order.sort_by_key(|e| (e.data.len(), hash_bytes(&e.data)));
    let mut covered: HashSet<u64> = HashSet::new();
    let mut keep: HashSet<String> = HashSet::new();
    if let Err(e) = fs::create_dir_all(dir) {
        eprintln!("{}: cannot create {}: {e}", target.name, dir.display());
        return 0;
    }
    for e in order {
        let mut adds = false;
        for &f in &e.features {
            adds |= covered.insert(f);
        }
        if adds {
            let name = format!("min-{:016x}", hash_bytes(&e.data));
            if let Err(err) = fs::write(dir.join(&name), &e.data) {
                eprintln!("{}: cannot write {name}: {err}", target.name);
            }
            keep.insert(name);
        }
    }
    for (path, _) in read_dir_files(dir) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.starts_with("min-") && !keep.contains(&name) {
            let _ = fs::remove_file(&path);
        }
    }
    keep.len()
}

/// Writes the target's seeds as `seed-<name>` into `dir`, replacing older `seed-*` files,
/// and its regressions as `regression-<name>` (other files, earlier regressions included,
/// are kept). Returns how many files it wrote.
pub fn write_seeds(target: &Target, dir: &Path) -> std::io::Result<usize> {
    fs::create_dir_all(dir)?;
    for (path, _) in read_dir_files(dir) {
        let stale = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("seed-"));
        if stale {
            fs::remove_file(&path)?;
        }
    }
    let mut written = 0;
    for (prefix, list) in [
        ("seed", (target.seeds)()),
        ("regression", (target.regressions)()),
    ] {
        for (name, data) in &list {
            fs::write(dir.join(format!("{prefix}-{name}")), data)?;
            written += 1;
        }
    }
    Ok(written)
}
