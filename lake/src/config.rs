//! One TOML file, layered: built-in defaults → the file → `IMGPIPE_*`
//! environment variables (`IMGPIPE_<SECTION>__<KEY>`, e.g.
//! `IMGPIPE_API__LISTEN=127.0.0.1:9000`). Validated once, at start.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

mod web;
pub use web::{
    CorsConfig, DirectUploadConfig, JWT_ALGORITHMS, JwtConfig, RateLimitConfig, TlsConfig,
};

/// `IMGPIPE_KAFKA_<KEY>` short forms (`IMGPIPE_KAFKA_BROKERS`, …).
const KAFKA_ENV_KEYS: &[&str] = &[
    "brokers",
    "topic",
    "group",
    "dlq_topic",
    "events_topic",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_ca_location",
];

/// The whole config file's text, for platforms that pass configuration
/// only through the environment (ECS task definitions): read like the
/// file, before the `IMGPIPE_<SECTION>__<KEY>` overrides.
pub const CONFIG_TOML_ENV: &str = "IMGPIPE_CONFIG_TOML";

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "api.api_keys",
    "api.cors.allowed_origins",
    "kafka.claim_check_allow",
];

const MAX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

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

/// A value kept out of `Debug` output and logs.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    /// The embedded default: a directory on the local filesystem.
    pub data_dir: PathBuf,
    /// When set, the lake lives in S3 instead of `data_dir`.
    pub s3: Option<S3Config>,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./imgpipe-data"),
            s3: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket, e.g. `imgpipe/`; empty for the root.
    #[serde(default)]
    pub prefix: String,
    /// Custom endpoint (SeaweedFS, MinIO…); unset means AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_true")]
    pub force_path_style: bool,
    /// Per-request timeout for every S3 call.
    #[serde(default = "default_s3_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Server-side encryption asked for on every write: `aws:kms` (with
    /// `sse_kms_key_id`, what the deployed bucket policy requires) or
    /// `AES256`. Unset: the bucket's default.
    #[serde(default)]
    pub sse: Option<ServerSideEncryption>,
    /// The KMS key (id or ARN) for `sse = "aws:kms"`.
    #[serde(default)]
    pub sse_kms_key_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerSideEncryption {
    #[serde(rename = "aws:kms")]
    AwsKms,
    #[serde(rename = "AES256")]
    Aes256,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_true() -> bool {
    true
}
fn default_s3_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Largest accepted image, in bytes (per file for multipart).
    pub max_upload_bytes: u64,
    pub max_files_per_request: usize,
    /// API keys, each stored as its SHA-256 with a principal and
    /// permissions (`[[api.keys]]`). With no keys at all the API is open to
    /// loopback callers only.
    pub keys: Vec<ApiKey>,
    /// Deprecated: plain keys, each granted `images:write`, `images:read`
    /// and `metrics:read` (never `images:erase`) as `key_principals` says.
    pub api_keys: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Uploads handled at once; bounds memory at about this × max_upload_bytes.
    pub max_concurrent_uploads: usize,
    /// The policy principal whose view the metadata listing shows to a
    /// caller whose key has no entry in `key_principals` (or to everyone,
    /// without keys).
    pub principal: String,
    /// API key → policy principal, for the metadata listing.
    pub key_principals: std::collections::BTreeMap<String, String>,
    /// The policy file; unset means the shipped `policies/default.toml`.
    pub policy: Option<PathBuf>,
    /// Longest wait for a request's headers (slow-client protection).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    pub cors: CorsConfig,
    /// Bearer tokens from an identity provider; unset: API keys only.
    pub jwt: Option<JwtConfig>,
    pub rate_limit: RateLimitConfig,
    pub tls: TlsConfig,
    pub direct_uploads: DirectUploadConfig,
}

impl ApiConfig {
    /// Does the API check callers at all?
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty() || !self.api_keys.is_empty() || self.jwt.is_some()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_upload_bytes: 32 * 1024 * 1024,
            max_files_per_request: 32,
            keys: Vec::new(),
            api_keys: Vec::new(),
            request_timeout: Duration::from_secs(60),
            max_concurrent_uploads: 16,
            principal: "analyst".into(),
            key_principals: Default::default(),
            policy: None,
            header_read_timeout: Duration::from_secs(10),
            cors: CorsConfig::default(),
            jwt: None,
            rate_limit: RateLimitConfig::default(),
            tls: TlsConfig::default(),
            direct_uploads: DirectUploadConfig::default(),
        }
    }
}

/// What an API key may do; every route checks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "images:write")]
    ImagesWrite,
    #[serde(rename = "images:read")]
    ImagesRead,
    #[serde(rename = "images:erase")]
    ImagesErase,
    #[serde(rename = "metrics:read")]
    MetricsRead,
}

impl Permission {
    pub const ALL: [Permission; 4] = [
        Permission::ImagesWrite,
        Permission::ImagesRead,
        Permission::ImagesErase,
        Permission::MetricsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ImagesWrite => "images:write",
            Permission::ImagesRead => "images:read",
            Permission::ImagesErase => "images:erase",
            Permission::MetricsRead => "metrics:read",
        }
    }
}

/// One `[[api.keys]]` entry. Only the key's digest is configured, so the
/// config file holds no secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Hex SHA-256 of the key as sent (`imgpipe keys hash` prints it).
    pub sha256: String,
    /// A principal of the policy file: the view this key reads through.
    pub principal: String,
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorConfig {
    /// Refuse images with more pixels than this, read from the header.
    pub max_pixels: u64,
    /// Decoded pixels in memory at once, charged from each image's header
    /// before it is decoded; also each decode's allocation cap
    /// (`image::Limits::max_alloc`).
    pub max_decode_bytes: u64,
    /// Raw bytes held by images being processed at once.
    pub max_inflight_bytes: u64,
    /// Capacity of the event channel from ingest to the processor.
    pub queue_capacity: usize,
    /// Longest side of the thumbnail, in pixels.
    pub thumbnail_px: u32,
    /// CPU threads for decode/resize/hash; 0 means one per core.
    pub workers: usize,
    /// Metadata rows are written at least this often.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Attempts for a storage failure before the image is given up for now.
    pub retries: u32,
    /// The customer's processing script; unset means none runs.
    pub script: Option<ScriptConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScriptMode {
    /// One process per image.
    PerImage,
    /// Long-lived workers answering one JSON line per request line.
    Stream,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// Program and arguments, e.g. `["python3", "scripts/example.py"]`.
    pub command: Vec<String>,
    #[serde(default = "default_mode")]
    pub mode: ScriptMode,
    /// Per image; past it the script's whole process group is killed.
    #[serde(default = "default_script_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Cap on what the script prints for one image (its JSON answer).
    #[serde(default = "default_max_output")]
    pub max_output_bytes: u64,
    /// Cap on the files one run may leave in its output dir, in total.
    #[serde(default = "default_max_files")]
    pub max_files_bytes: u64,
    /// Scripts running at once; 0 means one per core.
    #[serde(default)]
    pub concurrency: usize,
    /// Names of environment variables the script may see (values are ours);
    /// nothing else is inherited, so our secrets never reach it.
    #[serde(default = "default_env")]
    pub env: Vec<String>,
    /// Extra attempts after a crash, timeout or bad answer.
    #[serde(default = "default_script_retries")]
    pub retries: u32,
    /// Address-space limit (RLIMIT_AS) for the script's processes.
    #[serde(default = "default_script_memory")]
    pub max_memory_bytes: u64,
    /// CPU-time limit (RLIMIT_CPU) for one script process, in seconds.
    #[serde(default = "default_script_cpu")]
    pub max_cpu_seconds: u64,
    /// RLIMIT_NPROC. The kernel counts every process of the user imgpipe
    /// runs as, so leave room for imgpipe's own.
    #[serde(default = "default_script_processes")]
    pub max_processes: u64,
    /// RLIMIT_NOFILE for the script's processes.
    #[serde(default = "default_script_open_files")]
    pub max_open_files: u64,
    /// `bwrap` (bubblewrap; required unless `none` is said explicitly) or
    /// `none`, which runs the script with imgpipe's own view of the system.
    #[serde(default)]
    pub sandbox: SandboxKind,
    /// Extra paths the sandboxed script may read (models, libraries); the
    /// files named in `command` are always readable.
    #[serde(default)]
    pub read_only: Vec<PathBuf>,
    /// Where each run's private directory is made; stale ones (a crash) are
    /// removed by the sweeper. Default: `<temp dir>/imgpipe-scratch`.
    #[serde(default)]
    pub scratch_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxKind {
    #[default]
    Bwrap,
    None,
}

impl ScriptConfig {
    pub fn scratch_dir(&self) -> PathBuf {
        self.scratch_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("imgpipe-scratch"))
    }
}

fn default_mode() -> ScriptMode {
    ScriptMode::PerImage
}
fn default_script_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_output() -> u64 {
    1024 * 1024
}
fn default_max_files() -> u64 {
    64 * 1024 * 1024
}
fn default_env() -> Vec<String> {
    vec!["PATH".into(), "LANG".into(), "LC_ALL".into(), "TZ".into()]
}
fn default_script_retries() -> u32 {
    1
}
fn default_script_memory() -> u64 {
    4 * 1024 * 1024 * 1024
}
fn default_script_cpu() -> u64 {
    600
}
fn default_script_processes() -> u64 {
    1024
}
fn default_script_open_files() -> u64 {
    256
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            max_pixels: 100_000_000,
            max_decode_bytes: 1024 * 1024 * 1024,
            max_inflight_bytes: 256 * 1024 * 1024,
            queue_capacity: 1024,
            thumbnail_px: 256,
            workers: 0,
            flush_interval: Duration::from_secs(60),
            retries: 5,
            script: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// How long anything we store may live. At most 7 days.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            period: MAX_RETENTION,
            sweep_interval: Duration::from_secs(60),
        }
    }
}

/// The Kafka bridge and the distributed event transport. Off unless
/// `brokers` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`; unset turns the bridge off.
    pub brokers: Option<String>,
    /// The topic images arrive on (the customer's).
    pub topic: String,
    /// The bridge's consumer group.
    pub group: String,
    /// Where messages that cannot become images go, reason in headers.
    pub dlq_topic: String,
    /// `ImageReceived` events in distributed mode, keyed by image id.
    pub events_topic: String,
    /// The consumer group of `imgpipe process`.
    pub process_group: String,
    /// Partitions for the DLQ and event topics when the bridge creates them.
    pub partitions: i32,
    /// Largest image accepted from a message or a claim-check object.
    pub max_image_bytes: u64,
    /// Bytes of images the bridge holds at once; past it, it stops fetching.
    pub max_inflight_bytes: u64,
    /// How often consumed offsets are committed (every message is
    /// committed only after its image is durable).
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Consumer group session timeout; short, so rebalances are quick.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Timeout for every call to the brokers (produce, admin, commit).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// S3 endpoint for claim-check objects when the lake is not on S3
    /// (with an S3 lake, the lake's endpoint and region are used).
    pub claim_check_endpoint: Option<String>,
    /// Where claim-checks may point: `bucket` or `bucket/prefix`. Empty:
    /// claim-checks are refused. The lake's own bucket never is allowed.
    pub claim_check_allow: Vec<String>,
    /// Refuse to start when a topic keeps messages longer than retention.
    pub enforce_retention: bool,
    /// How to reach the brokers (librdkafka's `security.protocol`).
    pub security_protocol: KafkaSecurity,
    /// `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN`, for the `sasl_*` protocols.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    /// Best from the environment (`IMGPIPE_KAFKA_SASL_PASSWORD`), so no
    /// file holds it.
    pub sasl_password: Option<Secret>,
    /// PEM bundle of the CA that signed the brokers' certificates; unset
    /// means the system's CAs.
    pub ssl_ca_location: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaSecurity {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl KafkaSecurity {
    /// librdkafka's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// The SASL mechanisms librdkafka is built for here (GSSAPI is not).
pub const SASL_MECHANISMS: [&str; 3] = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"];

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: None,
            topic: "images".into(),
            group: "imgpipe-bridge".into(),
            dlq_topic: "images.dlq".into(),
            events_topic: "imgpipe.received".into(),
            process_group: "imgpipe-processor".into(),
            partitions: 4,
            max_image_bytes: 50 * 1024 * 1024,
            max_inflight_bytes: 256 * 1024 * 1024,
            commit_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(6),
            timeout: Duration::from_secs(30),
            claim_check_endpoint: None,
            claim_check_allow: Vec::new(),
            enforce_retention: false,
            security_protocol: KafkaSecurity::Plaintext,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    File {
        path: PathBuf,
        source: config::ConfigError,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
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
        let overrides: config::Map<String, config::Value> = env
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("IMGPIPE_")?;
                if rest.contains("__") {
                    return Some((rest.to_lowercase().replace("__", "."), v));
                }
                let key = rest.strip_prefix("KAFKA_")?.to_lowercase();
                KAFKA_ENV_KEYS
                    .contains(&key.as_str())
                    .then(|| (format!("kafka.{key}"), v))
            })
            .map(|(k, v)| {
                let value = if LIST_KEYS.contains(&k.as_str()) {
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

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError::Invalid(msg));
        let r = &self.retention;
        if r.period.is_zero() || r.period > MAX_RETENTION {
            return bad(format!(
                "retention.period must be more than 0 and at most 7 days, got {}",
                humantime::format_duration(r.period)
            ));
        }
        if r.sweep_interval.is_zero() || r.sweep_interval > Duration::from_secs(300) {
            return bad("retention.sweep_interval must be between 1s and 5m".into());
        }
        if self.api.max_upload_bytes == 0 {
            return bad("api.max_upload_bytes must be positive".into());
        }
        if self.api.max_files_per_request == 0 || self.api.max_concurrent_uploads == 0 {
            return bad(
                "api.max_files_per_request and api.max_concurrent_uploads must be positive".into(),
            );
        }
        if let Some(key) = self
            .api
            .key_principals
            .keys()
            .find(|k| !self.api.api_keys.contains(k))
        {
            return bad(format!(
                "api.key_principals names a key that is not in api.api_keys (starting {:?})",
                key.chars().take(4).collect::<String>()
            ));
        }
        if self.api.api_keys.iter().any(|k| k.len() < 16) {
            return bad("api.api_keys: every key must be at least 16 characters".into());
        }
        let mut digests = std::collections::BTreeSet::new();
        for (i, key) in self.api.keys.iter().enumerate() {
            if key.sha256.len() != 64 || !key.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad(format!(
                    "api.keys[{i}].sha256 must be 64 hex digits (imgpipe keys hash prints one)"
                ));
            }
            if !digests.insert(key.sha256.to_ascii_lowercase()) {
                return bad(format!("api.keys[{i}].sha256 appears twice"));
            }
            if key.permissions.is_empty() || key.principal.is_empty() {
                return bad(format!(
                    "api.keys[{i}] needs a principal and at least one permission"
                ));
            }
        }
        if !self.api.has_keys() && !self.api.cors.allowed_origins.is_empty() {
            return bad("api.cors needs API keys or [api.jwt]: a keyless API must not be callable from other origins' pages".into());
        }
        if self.api.header_read_timeout.is_zero() {
            return bad("api.header_read_timeout must be positive".into());
        }
        web::check(
            &self.api.cors,
            self.api.jwt.as_ref(),
            &self.api.tls,
            &self.api.direct_uploads,
        )
        .map_err(ConfigError::Invalid)?;
        let p = &self.processor;
        if !(16..=4096).contains(&p.thumbnail_px) {
            return bad(format!(
                "processor.thumbnail_px must be 16..=4096, got {}",
                p.thumbnail_px
            ));
        }
        if p.max_pixels == 0 || p.max_decode_bytes == 0 || p.queue_capacity == 0 {
            return bad(
                "processor.max_pixels, max_decode_bytes and queue_capacity must be positive".into(),
            );
        }
        if p.max_inflight_bytes < self.api.max_upload_bytes {
            return bad(
                "processor.max_inflight_bytes must be at least api.max_upload_bytes".into(),
            );
        }
        if p.flush_interval.is_zero() || p.flush_interval > Duration::from_secs(60) {
            return bad("processor.flush_interval must be between 1s and 60s (it bounds how late rows are purged)".into());
        }
        if let Some(script) = &p.script {
            if script.command.is_empty() || script.command[0].is_empty() {
                return bad("processor.script.command must name a program".into());
            }
            if script.timeout.is_zero() || script.max_output_bytes == 0 {
                return bad(
                    "processor.script.timeout and max_output_bytes must be positive".into(),
                );
            }
        }
        let k = &self.kafka;
        if k.brokers.is_some() {
            let topics = [&k.topic, &k.dlq_topic, &k.events_topic];
            if topics.iter().any(|t| t.is_empty())
                || k.group.is_empty()
                || k.process_group.is_empty()
            {
                return bad("kafka.topic, dlq_topic, events_topic, group and process_group must not be empty".into());
            }
            if k.topic == k.dlq_topic || k.topic == k.events_topic || k.dlq_topic == k.events_topic
            {
                return bad(
                    "kafka.topic, dlq_topic and events_topic must be three different topics".into(),
                );
            }
            if k.partitions < 1
                || k.max_image_bytes == 0
                || k.max_inflight_bytes < k.max_image_bytes
            {
                return bad("kafka.partitions must be positive and kafka.max_inflight_bytes at least kafka.max_image_bytes".into());
            }
            if k.commit_interval.is_zero()
                || k.session_timeout < Duration::from_secs(1)
                || k.timeout.is_zero()
            {
                return bad(
                    "kafka.commit_interval, session_timeout (>= 1s) and timeout must be positive"
                        .into(),
                );
            }
            if k.security_protocol.uses_sasl() {
                match k.sasl_mechanism.as_deref() {
                    Some(m) if SASL_MECHANISMS.contains(&m) => {}
                    other => {
                        return bad(format!(
                            "kafka.sasl_mechanism must be one of {} with security_protocol = \"{}\", got {other:?}",
                            SASL_MECHANISMS.join(", "),
                            k.security_protocol.as_str()
                        ));
                    }
                }
                if k.sasl_username.as_deref().is_none_or(str::is_empty)
                    || k.sasl_password.as_ref().is_none_or(|p| p.0.is_empty())
                {
                    return bad(
                        "kafka.sasl_username and kafka.sasl_password (IMGPIPE_KAFKA_SASL_PASSWORD) are needed for SASL".into(),
                    );
                }
            } else if k.sasl_mechanism.is_some() || k.sasl_username.is_some() {
                return bad(format!(
                    "kafka.sasl_* is set but security_protocol = \"{}\" does not use SASL (sasl_ssl?)",
                    k.security_protocol.as_str()
                ));
            }
            if k.ssl_ca_location.is_some() && !k.security_protocol.uses_tls() {
                return bad(
                    "kafka.ssl_ca_location is set but security_protocol uses no TLS".into(),
                );
            }
        }
        if let Some(s3) = &self.lake.s3 {
            if s3.bucket.is_empty() {
                return bad("lake.s3.bucket must not be empty".into());
            }
            if !(s3.prefix.is_empty() || s3.prefix.ends_with('/')) || s3.prefix.starts_with('/') {
                return bad(
                    "lake.s3.prefix must be empty or end with '/' (and not start with one)".into(),
                );
            }
            match (s3.sse, &s3.sse_kms_key_id) {
                (Some(ServerSideEncryption::AwsKms), Some(key)) if !key.is_empty() => {}
                (Some(ServerSideEncryption::AwsKms), _) => {
                    return bad("lake.s3.sse = \"aws:kms\" needs lake.s3.sse_kms_key_id".into());
                }
                (_, Some(_)) => {
                    return bad("lake.s3.sse_kms_key_id needs lake.s3.sse = \"aws:kms\"".into());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The serving commands may listen publicly only behind API keys.
    pub fn check_listen(&self) -> Result<(), ConfigError> {
        if !self.api.listen.ip().is_loopback() && !self.api.has_keys() {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on {} without api.keys (or api.api_keys): anyone could \
                 upload; configure keys or listen on 127.0.0.1",
                self.api.listen
            )));
        }
        Ok(())
    }

    pub fn retention(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.retention.period).unwrap_or(chrono::Duration::days(7))
    }

    pub fn script_slots(&self) -> usize {
        match self.processor.script.as_ref().map_or(0, |s| s.concurrency) {
            0 => self.worker_threads(),
            n => n,
        }
    }

    pub fn worker_threads(&self) -> usize {
        match self.processor.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
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
    fn public_listen_needs_keys() {
        let mut cfg = Config::default();
        cfg.api.listen = "0.0.0.0:8080".parse().unwrap();
        assert!(cfg.check_listen().is_err());
        cfg.api.api_keys = vec!["k".repeat(32)];
        assert!(cfg.check_listen().is_ok());
        cfg.api.api_keys.clear();
        cfg.api.keys = vec![ApiKey {
            sha256: "ab".repeat(32),
            principal: "analyst".into(),
            permissions: vec![Permission::ImagesRead],
        }];
        assert!(cfg.check_listen().is_ok());
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
