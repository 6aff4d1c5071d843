//! The agent's image store: images pulled from registries over the distribution API
//! (`oci-client`: OCI and Docker v2 schema 2 manifests, token and basic auth, digests
//! verified), their layers unpacked once each, content-addressed by the digest of the
//! blob, and shared by every task that uses them.
//!
//! Layout under the store's directory (`<work-dir>/images`):
//!
//! - `layers/<hex>/`: a layer unpacked for overlayfs (present means complete: it is
//!   unpacked under `tmp/` and renamed into place); `layers/<hex>.json` its size;
//! - `refs/<hash>.json`: what a reference resolved to when it was pulled (manifest digest,
//!   configuration, layers), so that later tasks start without asking the registry
//!   (Mesos' `Image.cached`; a reference by digest never changes);
//! - `locks/`: one file per reference and per layer, `flock`ed while it is pulled, so that
//!   executors pulling the same image at once pull it once;
//! - `tmp/`: pulls under way.
//!
//! The executors use the store (each pulls what its task needs); the agent only collects
//! what no container uses ([`Store::collect`]).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_image::{ImageConfig, ImageRef, Transport};
use serde::{Deserialize, Serialize};

use super::unpack::{self, Whiteouts};
use super::ImageSettings;

/// How long to wait to connect to a registry, and for each read from it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an image could not be provided. Each says which image and what went wrong, in
/// words an operator acts on.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {image:?}: {source}")]
    Reference {
        image: String,
        source: agora_image::ReferenceError,
    },
    #[error("image {image} not found in its registry: {reason}")]
    NotFound { image: String, reason: String },
    #[error("registry of image {image} unreachable: {reason}")]
    Unreachable { image: String, reason: String },
    #[error("image {image}: digest mismatch: {reason}")]
    DigestMismatch { image: String, reason: String },
    #[error("image {image}: registry refused the pull: {reason}")]
    Registry { image: String, reason: String },
    #[error("image {image}: the registry wants credentials the agent does not have or it refused (--registry-credentials): {reason}")]
    Unauthorized { image: String, reason: String },
    #[error("image {image}: {source}")]
    Config {
        image: String,
        source: agora_image::ConfigError,
    },
    #[error("image {image}: layer {layer}: {source}")]
    Unpack {
        image: String,
        layer: String,
        source: unpack::UnpackError,
    },
    #[error("image store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An image ready to run: its configuration and its layers, bottom first.
#[derive(Clone, Debug)]
pub struct Image {
    /// The reference, fully qualified.
    pub reference: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    pub config: ImageConfig,
    /// Layer directories, the base layer first.
    pub layers: Vec<PathBuf>,
    /// Digests (hex) of the layers, in the same order.
    pub layer_digests: Vec<String>,
    /// Whether anything was pulled for it (false: it came from the store).
    pub pulled: bool,
}

/// What a reference resolved to, as `refs/<hash>.json` keeps it.
#[derive(Serialize, Deserialize)]
struct ResolvedRef {
    reference: String,
    manifest_digest: String,
    config: String,
    /// Layer digests (hex), base first.
    layers: Vec<String>,
}

/// A layer's record, `layers/<hex>.json`.
#[derive(Serialize, Deserialize)]
struct LayerRecord {
    /// Bytes unpacked.
    bytes: u64,
}

/// The image store in one directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    settings: ImageSettings,
}

impl Store {
    /// The store in `settings.store_dir`, its directories created when missing.
    pub fn open(settings: &ImageSettings) -> Result<Store, ImageError> {
        let root = settings.store_dir.clone();
        for dir in ["layers", "refs", "locks", "tmp"] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(io_error(&d))?;
        }
        Ok(Store {
            root,
            settings: settings.clone(),
        })
    }

    fn layer_dir(&self, hex: &str) -> PathBuf {
        self.root.join("layers").join(hex)
    }

    fn ref_file(&self, reference: &str) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        reference.hash(&mut h);
        self.root
            .join("refs")
            .join(format!("{:016x}.json", h.finish()))
    }

    /// The image `text` names, from the store when it has it for this reference (unless
    /// `force_pull`), else pulled from its registry. Executors of tasks of the same image
    /// that ask at once pull it once: the others wait and find it in the store.
    pub async fn provide(&self, text: &str, force_pull: bool) -> Result<Image, ImageError> {
        let reference =
            ImageRef::parse(text, &self.settings.default_registry).map_err(|source| {
                ImageError::Reference {
                    image: text.to_string(),
                    source,
                }
            })?;
        let name = reference.to_string();
        let pinned = reference.digest().is_some();
        if !force_pull || pinned {
            if let Some(image) = self.cached(&name)? {
                return Ok(image);
            }
        }
        let started = std::time::SystemTime::now();
        let lock_path = self.ref_file(&name).with_extension("lock");
        let lock_path = self
            .root
            .join("locks")
            .join(lock_path.file_name().unwrap_or_default());
        let _lock = Lock::acquire(&lock_path).await?;
        // Pulled meanwhile by another executor (after this one asked, for a forced pull).
        if let Some(image) = self.cached(&name)? {
            let fresh = fs::metadata(self.ref_file(&name))
                .and_then(|m| m.modified())
                .is_ok_and(|m| m >= started);
            if !force_pull || pinned || fresh {
                return Ok(image);
            }
        }
        self.pull(&reference, &name).await
    }

    /// The image from the store: its reference resolved and every layer present.
    fn cached(&self, name: &str) -> Result<Option<Image>, ImageError> {
        let path = self.ref_file(name);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path)(e)),
        };
        let Ok(resolved) = serde_json::from_slice::<ResolvedRef>(&text) else {
            return Ok(None);
        };
        if resolved.reference != name {
            return Ok(None);
        }
        let layers: Vec<PathBuf> = resolved.layers.iter().map(|h| self.layer_dir(h)).collect();
        if !layers.iter().all(|l| l.is_dir()) {
            return Ok(None);
        }
        let config = ImageConfig::parse(resolved.config.as_bytes()).map_err(|source| {
            ImageError::Config {
                image: name.to_string(),
                source,
            }
        })?;
        Ok(Some(Image {
            reference: name.to_string(),
            manifest_digest: resolved.manifest_digest,
            config,
            layers,
            layer_digests: resolved.layers,
            pulled: false,
        }))
    }

    async fn pull(&self, reference: &ImageRef, name: &str) -> Result<Image, ImageError> {
        use oci_client::client::{ClientConfig, ClientProtocol};
        let oci_ref = match reference.digest() {
            Some(d) => oci_client::Reference::with_digest(
                reference.registry().to_string(),
                reference.repository().to_string(),
                d.to_string(),
            ),
            None => oci_client::Reference::with_tag(
                reference.registry().to_string(),
                reference.repository().to_string(),
                reference.manifest_reference(),
            ),
        };
        let protocol = match Transport::for_registry(reference.registry(), &self.settings.insecure)
        {
            Transport::Http => ClientProtocol::HttpsExcept(vec![reference.registry().to_string()]),
            Transport::Https => ClientProtocol::Https,
        };
        install_crypto_provider();
        let client = oci_client::Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..Default::default()
        });
        let auth = self.settings.auth_for(reference.registry());
        let (manifest, manifest_digest, config_text) = client
            .pull_manifest_and_config(&oci_ref, &auth)
            .await
            .map_err(|e| pull_error(name, e))?;
        let config =
            ImageConfig::parse(config_text.as_bytes()).map_err(|source| ImageError::Config {
                image: name.to_string(),
                source,
            })?;
        let mut hexes = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            let hex = layer
                .digest
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| ImageError::Registry {
                    image: name.to_string(),
                    reason: format!("layer digest {:?} is not sha256", layer.digest),
                })?
                .to_ascii_lowercase();
            if !self.layer_dir(&hex).is_dir() {
                let lock = Lock::acquire(&self.root.join("locks").join(&hex)).await?;
                if !self.layer_dir(&hex).is_dir() {
                    self.pull_layer(&client, &oci_ref, layer, &hex, name)
                        .await?;
                }
                drop(lock);
            }
            hexes.push(hex);
        }
        let resolved = ResolvedRef {
            reference: name.to_string(),
            manifest_digest: manifest_digest.clone(),
            config: config_text,
            layers: hexes.clone(),
        };
        let path = self.ref_file(name);
        let body = serde_json::to_vec(&resolved).map_err(|e| io_error(&path)(e.into()))?;
        write_atomically(&path, &body)?;
        Ok(Image {
            reference: name.to_string(),
            manifest_digest,
            config,
            layers: hexes.iter().map(|h| self.layer_dir(h)).collect(),
            layer_digests: hexes,
            pulled: true,
        })
    }

    /// One layer: the blob downloaded into `tmp/` (its digest checked as it streams),
    /// unpacked beside it, and renamed into `layers/`.
    async fn pull_layer(
        &self,
        client: &oci_client::Client,
        oci_ref: &oci_client::Reference,
        layer: &oci_client::manifest::OciDescriptor,
        hex: &str,
        name: &str,
    ) -> Result<(), ImageError> {
        let tmp = self.root.join("tmp");
        let unique = format!("{hex}.{}", std::process::id());
        let blob_path = tmp.join(format!("{unique}.blob"));
        let dir = tmp.join(&unique);
        let _ = fs::remove_dir_all(&dir);
        let result = async {
            let file = tokio::fs::File::create(&blob_path)
                .await
                .map_err(io_error(&blob_path))?;
            client
                .pull_blob(oci_ref, layer, file)
                .await
                .map_err(|e| pull_error(name, e))?;
            fs::create_dir(&dir).map_err(io_error(&dir))?;
            let (blob, into) = (blob_path.clone(), dir.clone());
            let unpacked = tokio::task::spawn_blocking(move || {
                let f = File::open(&blob)?;
                Ok::<_, io::Error>(unpack::unpack(f, &into, Whiteouts::Overlay))
            })
            .await
            .map_err(|e| io_error(&dir)(io::Error::other(e)))?
            .map_err(io_error(&blob_path))?
            .map_err(|source| ImageError::Unpack {
                image: name.to_string(),
                layer: layer.digest.clone(),
                source,
            })?;
            let record = serde_json::to_vec(&LayerRecord {
                bytes: unpacked.bytes,
            })
            .map_err(|e| io_error(&dir)(e.into()))?;
            let record_path = self.root.join("layers").join(format!("{hex}.json"));
            write_atomically(&record_path, &record)?;
            let target = self.layer_dir(hex);
            fs::rename(&dir, &target).map_err(io_error(&target))?;
            tracing::info!(image = %name, layer = %hex, bytes = unpacked.bytes, "layer pulled");
            Ok(())
        }
        .await;
        let _ = fs::remove_file(&blob_path);
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    /// Removes layers no container uses (`in_use`: digests, hex) while the store holds
    /// more than `threshold` bytes, least recently pulled first, and forgets the
    /// references that needed them. Returns the bytes freed.
    pub fn collect(&self, threshold: u64, in_use: &BTreeSet<String>) -> Result<u64, ImageError> {
        let layers_dir = self.root.join("layers");
        let mut layers: Vec<(std::time::SystemTime, String, u64)> = Vec::new();
        let mut total = 0u64;
        for entry in fs::read_dir(&layers_dir).map_err(io_error(&layers_dir))? {
            let entry = entry.map_err(io_error(&layers_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            let bytes = fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<LayerRecord>(&b).ok())
                .map_or(0, |r| r.bytes);
            let used = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            total += bytes;
            layers.push((used, hex.to_string(), bytes));
        }
        layers.sort();
        let mut freed = 0u64;
        let mut removed = BTreeSet::new();
        for (_, hex, bytes) in layers {
            if total - freed <= threshold {
                break;
            }
            if in_use.contains(&hex) {
                continue;
            }
            let dir = self.layer_dir(&hex);
            // Renamed first: a layer half removed is never taken for a whole one.
            let doomed = self.root.join("tmp").join(format!("{hex}.gc"));
            if fs::rename(&dir, &doomed).is_ok() {
                super::container::remove(&doomed);
            }
            let _ = fs::remove_file(layers_dir.join(format!("{hex}.json")));
            freed += bytes;
            removed.insert(hex);
        }
        if !removed.is_empty() {
            let refs = self.root.join("refs");
            for entry in fs::read_dir(&refs).map_err(io_error(&refs))?.flatten() {
                let stale = fs::read(entry.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ResolvedRef>(&b).ok())
                    .is_none_or(|r| r.layers.iter().any(|l| removed.contains(l)));
                if stale {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(freed)
    }

    /// Marks a layer as just used (its record's time orders [`Store::collect`]).
    pub fn touch(&self, hex: &str) {
        let record = self.root.join("layers").join(format!("{hex}.json"));
        if let Ok(f) = fs::OpenOptions::new().append(true).open(&record) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }
}

/// The one TLS provider the registry client uses.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A registry client's failure, sorted into what the operator needs to know.
fn pull_error(image: &str, e: oci_client::errors::OciDistributionError) -> ImageError {
    use oci_client::errors::OciDistributionError as E;
    let image = image.to_string();
    let reason = e.to_string();
    match &e {
        E::ImageManifestNotFoundError(_) => ImageError::NotFound { image, reason },
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => {
            ImageError::Unauthorized { image, reason }
        }
        E::DigestError(_) => ImageError::DigestMismatch { image, reason },
        E::RequestError(r) if r.is_connect() || r.is_timeout() => {
            ImageError::Unreachable { image, reason }
        }
        E::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| {
                matches!(
                    x.code,
                    oci_client::errors::OciErrorCode::ManifestUnknown
                        | oci_client::errors::OciErrorCode::NameUnknown
                        | oci_client::errors::OciErrorCode::BlobUnknown
                )
            }) =>
        {
            ImageError::NotFound { image, reason }
        }
        E::ServerError { code: 404, .. } => ImageError::NotFound { image, reason },
        _ if reason.contains("digest") => ImageError::DigestMismatch { image, reason },
        _ => ImageError::Registry { image, reason },
    }
}

/// `body` written to `path` whole or not at all.
fn write_atomically(path: &Path, body: &[u8]) -> Result<(), ImageError> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(io_error(&tmp))?;
    f.write_all(body).map_err(io_error(&tmp))?;
    f.sync_all().map_err(io_error(&tmp))?;
    fs::rename(&tmp, path).map_err(io_error(path))
}

/// An exclusive `flock` on a file, held until dropped (or the process ends).
struct Lock {
    _held: File,
}

impl Lock {
    async fn acquire(path: &Path) -> Result<Lock, ImageError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_error(path))?;
        let path_owned = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            // SAFETY: flock on a descriptor this closure owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(io_error(&path_owned)(io::Error::last_os_error()));
            }
            Ok(Lock { _held: file })
        })
        .await
        .map_err(|e| io_error(path)(io::Error::other(e)))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> ImageSettings {
        ImageSettings::defaults(dir)
    }

    fn layer(store: &Store, hex: &str, bytes: u64, age_s: u64) {
        fs::create_dir_all(store.layer_dir(hex).join("etc")).unwrap();
        let record = store.root.join("layers").join(format!("{hex}.json"));
        fs::write(&record, serde_json::to_vec(&LayerRecord { bytes }).unwrap()).unwrap();
        let when = std::time::SystemTime::now() - Duration::from_secs(age_s);
        File::options()
            .append(true)
            .open(&record)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[test]
    fn collection_removes_the_least_recently_used_unused_layers_down_to_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&settings(dir.path())).unwrap();
        layer(&store, "aa", 100, 300);
        layer(&store, "bb", 200, 200);
        layer(&store, "cc", 300, 100);
        layer(&store, "dd", 50, 10);
        let resolved = |layers: &[&str]| ResolvedRef {
            reference: "r".into(),
            manifest_digest: "sha256:x".into(),
            config: "{}".into(),
            layers: layers.iter().map(|s| s.to_string()).collect(),
        };
        let with_aa = store.root.join("refs/1.json");
        let with_bb = store.root.join("refs/2.json");
        fs::write(
            &with_aa,
            serde_json::to_vec(&resolved(&["aa", "dd"])).unwrap(),
        )
        .unwrap();
        fs::write(&with_bb, serde_json::to_vec(&resolved(&["bb"])).unwrap()).unwrap();

        // 650 bytes, 350 allowed, bb in use: aa goes (550), bb is skipped, cc goes (250).
        let in_use: BTreeSet<String> = ["bb".to_string()].into();
        assert_eq!(store.collect(350, &in_use).unwrap(), 400);
        for (hex, kept) in [("aa", false), ("bb", true), ("cc", false), ("dd", true)] {
            assert_eq!(store.layer_dir(hex).is_dir(), kept, "{hex}");
        }
        // A reference that needs a removed layer is forgotten; the other stays.
        assert!(!with_aa.exists());
        assert!(with_bb.exists());
        // Under the threshold: nothing more goes.
        assert_eq!(store.collect(350, &BTreeSet::new()).unwrap(), 0);
        assert!(store.layer_dir("dd").is_dir());
    }

    #[test]
    fn a_cached_reference_needs_every_layer_and_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&settings(dir.path())).unwrap();
        let name = "127.0.0.1:5000/tools/x:v1";
        let config = r#"{"os":"linux","architecture":"amd64","config":{"Cmd":["true"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let body = ResolvedRef {
            reference: name.into(),
            manifest_digest: "sha256:m".into(),
            config: config.into(),
            layers: vec!["aa".into()],
        };
        write_atomically(&store.ref_file(name), &serde_json::to_vec(&body).unwrap()).unwrap();
        assert!(store.cached(name).unwrap().is_none(), "layer aa is missing");
        layer(&store, "aa", 1, 0);
        let image = store.cached(name).unwrap().expect("cached");
        assert_eq!(image.layers, vec![store.layer_dir("aa")]);
        assert!(!image.pulled);
        assert!(store.cached("127.0.0.1:5000/tools/x:v2").unwrap().is_none());
    }
}
