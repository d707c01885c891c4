//! The config file, assembled from the sections each stage owns, and read
//! in layers: built-in defaults → the file (or `IMGPIPE_CONFIG_TOML`) →
//! `IMGPIPE_<SECTION>__<KEY>` environment variables (e.g.
//! `IMGPIPE_API__LISTEN=127.0.0.1:9000`). Validated once, at start: each
//! section by its stage, what spans two sections here.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use ingest_api::ApiConfig;
use kafka_bridge::KafkaConfig;
use lake::{
    Layout,
    config::{Invalid, LakeConfig, RetentionConfig},
};
use processor::ProcessorConfig;
use serde::{Deserialize, Serialize};

/// The whole config file's text, for platforms that pass configuration
/// only through the environment (ECS task definitions): read like the
/// file, before the `IMGPIPE_<SECTION>__<KEY>` overrides.
pub const CONFIG_TOML_ENV: &str = "IMGPIPE_CONFIG_TOML";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub lake: LakeConfig,
    pub api: ApiConfig,
    pub processor: ProcessorConfig,
    pub retention: RetentionConfig,
    pub kafka: KafkaConfig,
    pub telemetry: TelemetryConfig,
}

/// The telemetry listener of the modes without an HTTP API of their own
/// (`bridge`, `process`, `sweep`), and an extra one for `up`/`serve`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Where `/metrics` and `/healthz` answer, unauthenticated: bind it to
    /// a private address. Unset: no listener.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    File {
        path: PathBuf,
        source: config::ConfigError,
    },
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
}

/// Keys whose environment value is a comma-separated list, as each
/// section declares them.
fn list_keys() -> impl Iterator<Item = String> {
    let section = |name: &'static str, keys: &'static [&'static str]| {
        keys.iter().map(move |k| format!("{name}.{k}"))
    };
    section("api", ingest_api::config::LIST_KEYS)
        .chain(section("kafka", kafka_bridge::config::LIST_KEYS))
}

impl Config {
    /// Defaults, then `file` (if any), then `IMGPIPE_<SECTION>__<KEY>` env vars.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&Config::default())?);
        if let Some(path) = file {
            // Read it ourselves so a missing file names its path.
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.to_owned(),
                source: config::ConfigError::Foreign(Box::new(e)),
            })?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        if let Some((_, text)) = env.iter().find(|(k, _)| k == CONFIG_TOML_ENV) {
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
        }
        // Only IMGPIPE_<SECTION>__<KEY>, plus the Kafka client convention
        // IMGPIPE_KAFKA_<KEY>: other IMGPIPE_* variables (test fixtures,
        // tooling) are not configuration.
        let lists: Vec<String> = list_keys().collect();
        let overrides: config::Map<String, config::Value> = env
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("IMGPIPE_")?;
                if rest.contains("__") {
                    return Some((rest.to_lowercase().replace("__", "."), v));
                }
                let key = rest.strip_prefix("KAFKA_")?.to_lowercase();
                kafka_bridge::config::ENV_SHORT_KEYS
                    .contains(&key.as_str())
                    .then(|| (format!("kafka.{key}"), v))
            })
            .map(|(k, v)| {
                let value = if lists.contains(&k) {
                    config::Value::from(v.split(',').map(str::to_owned).collect::<Vec<_>>())
                } else {
                    config::Value::from(v)
                };
                (k, value)
            })
            .collect();
        for (k, v) in overrides {
            builder = builder.set_override(k, v)?;
        }
        let cfg: Config = builder.build()?.try_deserialize().map_err(|e| match file {
            Some(path) => ConfigError::File {
                path: path.to_owned(),
                source: e,
            },
            None => ConfigError::Load(e),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Each section's own checks, then what ties two sections together.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.retention.validate()?;
        self.api.validate()?;
        self.processor.validate()?;
        self.kafka.validate()?;
        self.lake.validate()?;
        // An upload the API accepts must fit the processor's raw budget.
        if self.processor.max_inflight_bytes < self.api.max_upload_bytes {
            return Invalid::err(
                "processor.max_inflight_bytes must be at least api.max_upload_bytes",
            );
        }
        Ok(())
    }

    pub fn retention(&self) -> chrono::Duration {
        self.retention.duration()
    }

    pub fn layout(&self) -> Layout {
        self.retention.layout()
    }

    /// The configured script's scratch dir, for the sweeper and the audit.
    pub fn scratch(&self) -> Option<retention::scratch::Scratch> {
        let script = self.processor.script.as_ref()?;
        Some(retention::scratch::Scratch::for_runs(
            script.scratch_dir(),
            script.longest_run(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use ingest_api::Permission;
    use kafka_bridge::KafkaSecurity;
    use lake::config::{MAX_RETENTION, Secret, ServerSideEncryption};

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = Config::load_with_env(None, env(&[])).unwrap();
        assert_eq!(cfg.retention.period, MAX_RETENTION);
        assert_eq!(cfg.api.max_upload_bytes, 32 * 1024 * 1024);
    }

    #[test]
    fn file_then_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imgpipe.toml");
        std::fs::write(&path, "[api]\nlisten = \"127.0.0.1:9000\"\nmax_upload_bytes = 1000\n[processor]\nmax_inflight_bytes = 5000\n").unwrap();
        let cfg = Config::load_with_env(
            Some(&path),
            env(&[
                ("IMGPIPE_API__MAX_UPLOAD_BYTES", "2000"),
                ("IMGPIPE_TEST_S3_ENDPOINT", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.api.listen.port(), 9000);
        assert_eq!(cfg.api.max_upload_bytes, 2000);
    }

    #[test]
    fn list_values_come_from_comma_separated_env() {
        let cfg = Config::load_with_env(
            None,
            env(&[
                (
                    "IMGPIPE_API__API_KEYS",
                    "0123456789abcdef0,0123456789abcdef1",
                ),
                ("IMGPIPE_KAFKA__CLAIM_CHECK_ALLOW", "uploads,big/photos"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.api.api_keys.len(), 2);
        assert_eq!(cfg.kafka.claim_check_allow, vec!["uploads", "big/photos"]);
    }

    #[test]
    fn a_check_spanning_two_sections() {
        let e = Config::load_with_env(
            None,
            env(&[
                ("IMGPIPE_API__MAX_UPLOAD_BYTES", "2000"),
                ("IMGPIPE_PROCESSOR__MAX_INFLIGHT_BYTES", "1000"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("processor.max_inflight_bytes"), "{e}");
    }

    #[test]
    fn sasl_settings_come_from_env_and_are_checked() {
        let base = [
            ("IMGPIPE_KAFKA_BROKERS", "b1:9096"),
            ("IMGPIPE_KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("IMGPIPE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("IMGPIPE_KAFKA_SASL_USERNAME", "imgpipe"),
        ];
        let mut pairs = base.to_vec();
        pairs.push(("IMGPIPE_KAFKA_SASL_PASSWORD", "s3cret-pw"));
        let cfg = Config::load_with_env(None, env(&pairs)).unwrap();
        assert_eq!(cfg.kafka.security_protocol, KafkaSecurity::SaslSsl);
        assert_eq!(cfg.kafka.sasl_password, Some(Secret("s3cret-pw".into())));
        // The password never reaches Debug output (and so no log line).
        assert!(!format!("{cfg:?}").contains("s3cret-pw"));
        let e = Config::load_with_env(None, env(&base)).unwrap_err();
        assert!(e.to_string().contains("sasl_password"), "{e}");
        let mut gssapi = pairs.clone();
        gssapi[2] = ("IMGPIPE_KAFKA_SASL_MECHANISM", "GSSAPI");
        let e = Config::load_with_env(None, env(&gssapi)).unwrap_err();
        assert!(e.to_string().contains("sasl_mechanism"), "{e}");
        let mut plain = pairs.clone();
        plain[1] = ("IMGPIPE_KAFKA_SECURITY_PROTOCOL", "ssl");
        let e = Config::load_with_env(None, env(&plain)).unwrap_err();
        assert!(e.to_string().contains("does not use SASL"), "{e}");
    }

    #[test]
    fn config_toml_env_is_read_like_the_file_and_env_overrides_it() {
        let text = "[lake.s3]\nbucket = \"lake\"\nsse = \"aws:kms\"\nsse_kms_key_id = \"arn:aws:kms:eu-west-1:1:key/k\"\n[telemetry]\nlisten = \"0.0.0.0:9464\"\n";
        let cfg = Config::load_with_env(
            None,
            env(&[
                (CONFIG_TOML_ENV, text),
                ("IMGPIPE_LAKE__S3__PREFIX", "imgpipe/"),
            ]),
        )
        .unwrap();
        let s3 = cfg.lake.s3.unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("lake", "imgpipe/")
        );
        assert_eq!(s3.sse, Some(ServerSideEncryption::AwsKms));
        assert_eq!(cfg.telemetry.listen, Some("0.0.0.0:9464".parse().unwrap()));
        let e = Config::load_with_env(
            None,
            env(&[(
                CONFIG_TOML_ENV,
                "[lake.s3]\nbucket = \"lake\"\nsse = \"aws:kms\"\n",
            )]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("sse_kms_key_id"), "{e}");
    }

    #[test]
    fn an_s3_lake_can_come_from_env_alone() {
        let cfg = Config::load_with_env(
            None,
            env(&[
                ("IMGPIPE_LAKE__S3__BUCKET", "lake"),
                ("IMGPIPE_LAKE__S3__SSE", "aws:kms"),
                ("IMGPIPE_LAKE__S3__SSE_KMS_KEY_ID", "alias/imgpipe"),
            ]),
        )
        .unwrap();
        let s3 = cfg.lake.s3.unwrap();
        assert_eq!(s3.bucket, "lake");
        assert_eq!(s3.sse_kms_key_id.as_deref(), Some("alias/imgpipe"));
    }

    #[test]
    fn kafka_is_off_by_default_and_takes_short_env_names() {
        let cfg = Config::load_with_env(None, env(&[])).unwrap();
        assert!(cfg.kafka.brokers.is_none());
        let cfg = Config::load_with_env(
            None,
            env(&[
                ("IMGPIPE_KAFKA_BROKERS", "127.0.0.1:9092"),
                ("IMGPIPE_KAFKA_TOPIC", "uploads"),
                ("IMGPIPE_KAFKA__GROUP", "g1"),
                ("IMGPIPE_KAFKA_DLQ_TOPIC", "uploads.dlq"),
                ("IMGPIPE_KAFKA_NOT_A_KEY", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.kafka.brokers.as_deref(), Some("127.0.0.1:9092"));
        assert_eq!(cfg.kafka.topic, "uploads");
        assert_eq!(cfg.kafka.group, "g1");
        assert_eq!(cfg.kafka.dlq_topic, "uploads.dlq");
        let e = Config::load_with_env(
            None,
            env(&[
                ("IMGPIPE_KAFKA_BROKERS", "127.0.0.1:9092"),
                ("IMGPIPE_KAFKA_DLQ_TOPIC", "images"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("three different topics"), "{e}");
    }

    #[test]
    fn invalid_values_are_clear_errors() {
        let e = Config::load_with_env(None, env(&[("IMGPIPE_RETENTION__PERIOD", "8d")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("retention.period"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[api]\nlistne = \"x\"\n").unwrap();
        let e = Config::load_with_env(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.toml") && e.contains("listne"), "{e}");
    }

    #[test]
    fn api_keys_are_digests_with_principal_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let digest = "0f".repeat(32);
        std::fs::write(
            &path,
            format!(
                "[[api.keys]]\nsha256 = \"{digest}\"\nprincipal = \"analyst\"\n\
                 permissions = [\"images:read\", \"metrics:read\"]\n"
            ),
        )
        .unwrap();
        let cfg = Config::load_with_env(Some(&path), env(&[])).unwrap();
        assert_eq!(cfg.api.keys.len(), 1);
        assert_eq!(
            cfg.api.keys[0].permissions,
            vec![Permission::ImagesRead, Permission::MetricsRead]
        );
        std::fs::write(
            &path,
            "[[api.keys]]\nsha256 = \"nothex\"\nprincipal = \"analyst\"\npermissions = [\"images:read\"]\n",
        )
        .unwrap();
        let e = Config::load_with_env(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.keys[0].sha256"), "{e}");
        std::fs::write(
            &path,
            format!("[[api.keys]]\nsha256 = \"{digest}\"\nprincipal = \"analyst\"\npermissions = [\"images:delete\"]\n"),
        )
        .unwrap();
        let e = Config::load_with_env(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("images:delete"), "{e}");
    }
}
