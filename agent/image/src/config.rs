//! An image's configuration blob (OCI's `application/vnd.oci.image.config.v1+json`, which
//! Docker's schema-2 config matches field for field): what a container runs by default and
//! the digests of its layers' uncompressed contents (`rootfs.diff_ids`), bottom first.

use serde::Deserialize;

use crate::digest::{Digest, DigestError};

/// The parts of an image's configuration a task's container uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub os: String,
    pub architecture: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries split at the first `=`, in the image's order.
    pub env: Vec<(String, String)>,
    /// Empty: `/`.
    pub working_dir: String,
    /// `USER[:GROUP]` as the image's `USER` instruction wrote it; empty: root.
    pub user: String,
    /// Digests of the layers' uncompressed tar streams, bottom layer first.
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("image configuration is not valid JSON of the OCI image config: {0}")]
    Json(String),
    #[error("image configuration: environment entry {0:?} is not KEY=VALUE")]
    Env(String),
    #[error("image configuration: layer diff id: {0}")]
    DiffId(#[from] DigestError),
    #[error("image is for {os}/{architecture}, not linux")]
    Platform { os: String, architecture: String },
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    config: Option<RunConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Deserialize, Default)]
struct RunConfig {
    #[serde(rename = "User", default)]
    user: Option<String>,
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

impl ImageConfig {
    /// Parses a configuration blob. An image for another OS is refused (its architecture is
    /// the caller's to check: the agent knows its own).
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let file: File =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(e.to_string()))?;
        if !file.os.is_empty() && file.os != "linux" {
            return Err(ConfigError::Platform {
                os: file.os,
                architecture: file.architecture,
            });
        }
        let run = file.config.unwrap_or_default();
        let env = run
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(ConfigError::Env(e)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let diff_ids = file
            .rootfs
            .map(|r| r.diff_ids)
            .unwrap_or_default()
            .iter()
            .map(|d| d.parse::<Digest>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ImageConfig {
            os: file.os,
            architecture: file.architecture,
            entrypoint: run.entrypoint.unwrap_or_default(),
            cmd: run.cmd.unwrap_or_default(),
            env,
            working_dir: run.working_dir.unwrap_or_default(),
            user: run.user.unwrap_or_default(),
            diff_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

    #[test]
    fn a_docker_config_blob_is_read() {
        let blob = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"User":"1000:1000",
            "Env":["PATH=/usr/bin:/bin","EMPTY=","EQ=a=b"],"Entrypoint":["/entry"],"Cmd":null,
            "WorkingDir":"/srv","ExposedPorts":{{"80/tcp":{{}}}}}},
            "rootfs":{{"type":"layers","diff_ids":["sha256:{HEX}"]}},"history":[]}}"#
        );
        let c = ImageConfig::parse(blob.as_bytes()).unwrap();
        assert_eq!(c.entrypoint, vec!["/entry"]);
        assert!(c.cmd.is_empty());
        assert_eq!(
            c.env,
            vec![
                ("PATH".to_string(), "/usr/bin:/bin".to_string()),
                ("EMPTY".to_string(), String::new()),
                ("EQ".to_string(), "a=b".to_string()),
            ]
        );
        assert_eq!(
            (c.working_dir.as_str(), c.user.as_str()),
            ("/srv", "1000:1000")
        );
        assert_eq!(c.diff_ids.len(), 1);
    }

    #[test]
    fn a_minimal_config_has_empty_defaults() {
        let c = ImageConfig::parse(br#"{"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#)
            .unwrap();
        assert_eq!(c.entrypoint, Vec::<String>::new());
        assert_eq!(c.working_dir, "");
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        for bad in [&b"{"[..], b"\"text\"", b"{\"config\":{\"Cmd\":\"sh\"}}"] {
            assert!(matches!(ImageConfig::parse(bad), Err(ConfigError::Json(_))));
        }
        assert_eq!(
            ImageConfig::parse(br#"{"os":"linux","config":{"Env":["NOEQUALS"]}}"#),
            Err(ConfigError::Env("NOEQUALS".into()))
        );
        assert!(matches!(
            ImageConfig::parse(br#"{"os":"windows","architecture":"amd64"}"#),
            Err(ConfigError::Platform { .. })
        ));
        assert!(matches!(
            ImageConfig::parse(br#"{"os":"linux","rootfs":{"diff_ids":["sha256:zz"]}}"#),
            Err(ConfigError::DiffId(_))
        ));
    }
}
