//! A real image registry on loopback for tests (the distribution's `docker-registry`,
//! filesystem storage in a temporary directory), and small images built for it from the
//! host's static busybox with `umoci` and pushed with `skopeo`: the tools `.ci/run`
//! installs. The registry dies with the [`Registry`] (and, through [`crate::reap`], with
//! the test process).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the tests need installed (Debian packages: docker-registry, umoci, skopeo, crun,
/// busybox-static).
pub const TOOLS: [&str; 4] = ["docker-registry", "umoci", "skopeo", "crun"];

/// A running registry.
pub struct Registry {
    /// HOST:PORT on 127.0.0.1.
    pub addr: String,
    /// The user and password it asks for (HTTP basic auth), if any.
    pub credentials: Option<(String, String)>,
    dir: tempfile::TempDir,
    log: PathBuf,
    child: Option<Child>,
}

/// An image to build: busybox (its applets linked in `/bin`), an `/etc/passwd` with root,
/// `app` (1000) and nobody, `files` added, and the configuration given.
#[derive(Clone, Debug, Default)]
pub struct ImageSpec {
    /// Repository and tag, e.g. `tools/busybox:v1`.
    pub name: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub workdir: String,
    /// Paths (relative to the root) and contents.
    pub files: Vec<(String, Vec<u8>)>,
    /// A layer of this many bytes of incompressible data on top (for pull benchmarks).
    pub padding_bytes: u64,
    /// Pushed as a Docker v2 schema 2 manifest (else OCI).
    pub docker_format: bool,
}

/// An image in the registry.
#[derive(Clone, Debug)]
pub struct PushedImage {
    /// `ADDR/NAME:TAG`.
    pub reference: String,
    /// Its layers' digests (`sha256:...`), base first.
    pub layers: Vec<String>,
}

/// The layer digests of `tag` in an OCI layout.
fn layer_digests(layout: &Path, tag: &str) -> Result<Vec<String>, String> {
    let read = |p: PathBuf| -> Result<serde_json::Value, String> {
        let text = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", p.display()))
    };
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index = read(layout.join("index.json"))?;
    let manifest_digest = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .ok_or_else(|| format!("tag {tag} not in the layout"))?;
    let manifest = read(blob(manifest_digest))?;
    Ok(manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["digest"].as_str().map(str::to_string))
        .collect())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{cmd:?}: {e} (install {})", TOOLS.join(", ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The host's static busybox.
fn busybox() -> Result<PathBuf, String> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| "no busybox (install busybox-static)".to_string())
}

impl Registry {
    /// Starts a registry on a free loopback port and waits until it answers.
    pub fn start() -> Result<Registry, String> {
        Registry::start_on("127.0.0.1")
    }

    /// Starts a registry on a free port of `ip` (an address of this host) and waits until
    /// it answers.
    pub fn start_on(ip: &str) -> Result<Registry, String> {
        Registry::start_with(ip, None)
    }

    /// Starts a registry on loopback that asks for `user` and `password` (HTTP basic
    /// auth, a bcrypt htpasswd made with python3's crypt).
    pub fn start_with_auth(user: &str, password: &str) -> Result<Registry, String> {
        Registry::start_with("127.0.0.1", Some((user.to_string(), password.to_string())))
    }

    fn start_with(ip: &str, credentials: Option<(String, String)>) -> Result<Registry, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let addr = format!("{ip}:{}", crate::free_port());
        let config = dir.path().join("registry.yml");
        let auth = match &credentials {
            Some((user, password)) => {
                let out = Command::new("python3")
                    .args([
                        "-W",
                        "ignore",
                        "-c",
                        "import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                        password,
                    ])
                    .output()
                    .map_err(|e| format!("python3: {e}"))?;
                let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !hash.starts_with("$2") {
                    return Err(format!("no bcrypt hash from python3: {hash:?}"));
                }
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).map_err(|e| e.to_string())?;
                format!(
                    "auth:\n  htpasswd:\n    realm: agora-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{auth}http:\n  addr: {addr}\n",
                dir.path().join("storage").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = dir.path().join("registry.log");
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out);
        let child = crate::reap::spawn(cmd)
            .map_err(|e| format!("docker-registry: {e} (install {})", TOOLS.join(", ")))?;
        let registry = Registry {
            addr,
            credentials,
            dir,
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some((200 | 401, _)) = crate::http_get(&registry.addr, "/v2/") {
                return Ok(registry);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "registry on {} did not answer: {}",
            registry.addr,
            std::fs::read_to_string(&registry.log).unwrap_or_default()
        ))
    }

    /// Builds `spec` and pushes it.
    pub fn push(&self, spec: &ImageSpec) -> Result<PushedImage, String> {
        let work = tempfile::tempdir_in(self.dir.path()).map_err(|e| e.to_string())?;
        let layout = work.path().join("layout");
        let bundle = work.path().join("bundle");
        let image = format!("{}:build", layout.display());
        run(Command::new("umoci")
            .arg("init")
            .arg("--layout")
            .arg(&layout))?;
        run(Command::new("umoci").args(["new", "--image", &image]))?;
        run(Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle))?;
        let rootfs = bundle.join("rootfs");
        let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(|e| e.to_string());
        for d in ["bin", "etc", "home/app", "tmp", "root"] {
            mkdir(&rootfs.join(d))?;
        }
        std::fs::copy(busybox()?, rootfs.join("bin/busybox")).map_err(|e| e.to_string())?;
        for applet in [
            "sh", "ls", "cat", "echo", "id", "sleep", "env", "pwd", "touch", "dd", "yes", "head",
            "nc", "wc", "test", "hostname", "grep", "stat", "true", "false", "mkdir", "rm",
            "httpd", "tr",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .map_err(|e| e.to_string())?;
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n",
        )
        .map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(rootfs.join("home/app"), Some(1000), Some(1000))
            .map_err(|e| e.to_string())?;
        for (path, contents) in &spec.files {
            let p = rootfs.join(path);
            if let Some(parent) = p.parent() {
                mkdir(parent)?;
            }
            std::fs::write(&p, contents).map_err(|e| e.to_string())?;
        }
        run(Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle))?;
        if spec.padding_bytes > 0 {
            // A second layer of random bytes (incompressible, so the blob is that big).
            std::fs::remove_dir_all(&bundle).map_err(|e| e.to_string())?;
            run(Command::new("umoci")
                .args(["unpack", "--image", &image])
                .arg(&bundle))?;
            let pad = bundle.join("rootfs/padding");
            mkdir(&pad)?;
            run(Command::new("head")
                .arg("-c")
                .arg(spec.padding_bytes.to_string())
                .arg("/dev/urandom")
                .stdout(std::fs::File::create(pad.join("data")).map_err(|e| e.to_string())?))?;
            run(Command::new("umoci")
                .args(["repack", "--image", &image])
                .arg(&bundle))?;
        }
        let (repo, tag) = spec
            .name
            .rsplit_once(':')
            .ok_or_else(|| format!("{:?} is not NAME:TAG", spec.name))?;
        let mut config = Command::new("umoci");
        config.args(["config", "--image", &image, "--tag", tag]);
        for e in &spec.entrypoint {
            config.arg(format!("--config.entrypoint={e}"));
        }
        for c in &spec.cmd {
            config.arg(format!("--config.cmd={c}"));
        }
        for e in &spec.env {
            config.arg(format!("--config.env={e}"));
        }
        if !spec.user.is_empty() {
            config.arg(format!("--config.user={}", spec.user));
        }
        if !spec.workdir.is_empty() {
            config.arg(format!("--config.workingdir={}", spec.workdir));
        }
        run(&mut config)?;
        let reference = format!("{}/{repo}:{tag}", self.addr);
        let mut copy = Command::new("skopeo");
        copy.args(["copy", "--dest-tls-verify=false"]);
        if let Some((user, password)) = &self.credentials {
            copy.arg(format!("--dest-creds={user}:{password}"));
        }
        if spec.docker_format {
            copy.args(["--format", "v2s2"]);
        }
        run(copy
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{reference}")))?;
        Ok(PushedImage {
            layers: layer_digests(&layout, tag)?,
            reference,
        })
    }

    /// The file the registry keeps a blob in (to corrupt it).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// How many times the registry was asked for a manifest of `repository`.
    pub fn manifest_requests(&self, repository: &str) -> usize {
        let needle = format!("\"GET /v2/{repository}/manifests/");
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }

    /// How many times the registry served the blob `digest` (`sha256:...`) in full.
    pub fn blob_requests(&self, digest: &str) -> usize {
        let needle = format!("/blobs/{digest} HTTP/1.1\" 200");
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&needle))
            .count()
    }

    /// The registry's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
