//! The Kafka section of the config file (`[kafka]`): the bridge's and the
//! distributed event transport's settings, their defaults and checks.

use std::{path::PathBuf, time::Duration};

use lake::config::{Invalid, Secret};
use serde::{Deserialize, Serialize};

/// `IMGPIPE_KAFKA_<KEY>` short forms (`IMGPIPE_KAFKA_BROKERS`, …), the
/// Kafka clients' convention, beside `IMGPIPE_KAFKA__<KEY>`.
pub const ENV_SHORT_KEYS: &[&str] = &[
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

/// Keys of this section whose environment value is a comma-separated list.
pub const LIST_KEYS: &[&str] = &["claim_check_allow"];

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

impl KafkaConfig {
    /// Checked only when Kafka is on (`brokers` set).
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.brokers.is_none() {
            return Ok(());
        }
        let topics = [&self.topic, &self.dlq_topic, &self.events_topic];
        if topics.iter().any(|t| t.is_empty())
            || self.group.is_empty()
            || self.process_group.is_empty()
        {
            return Invalid::err(
                "kafka.topic, dlq_topic, events_topic, group and process_group must not be empty",
            );
        }
        if self.topic == self.dlq_topic
            || self.topic == self.events_topic
            || self.dlq_topic == self.events_topic
        {
            return Invalid::err(
                "kafka.topic, dlq_topic and events_topic must be three different topics",
            );
        }
        if self.partitions < 1
            || self.max_image_bytes == 0
            || self.max_inflight_bytes < self.max_image_bytes
        {
            return Invalid::err(
                "kafka.partitions must be positive and kafka.max_inflight_bytes at least kafka.max_image_bytes",
            );
        }
        if self.commit_interval.is_zero()
            || self.session_timeout < Duration::from_secs(1)
            || self.timeout.is_zero()
        {
            return Invalid::err(
                "kafka.commit_interval, session_timeout (>= 1s) and timeout must be positive",
            );
        }
        if self.security_protocol.uses_sasl() {
            match self.sasl_mechanism.as_deref() {
                Some(m) if SASL_MECHANISMS.contains(&m) => {}
                other => {
                    return Invalid::err(format!(
                        "kafka.sasl_mechanism must be one of {} with security_protocol = \"{}\", got {other:?}",
                        SASL_MECHANISMS.join(", "),
                        self.security_protocol.as_str()
                    ));
                }
            }
            if self.sasl_username.as_deref().is_none_or(str::is_empty)
                || self.sasl_password.as_ref().is_none_or(|p| p.0.is_empty())
            {
                return Invalid::err(
                    "kafka.sasl_username and kafka.sasl_password (IMGPIPE_KAFKA_SASL_PASSWORD) are needed for SASL",
                );
            }
        } else if self.sasl_mechanism.is_some() || self.sasl_username.is_some() {
            return Invalid::err(format!(
                "kafka.sasl_* is set but security_protocol = \"{}\" does not use SASL (sasl_ssl?)",
                self.security_protocol.as_str()
            ));
        }
        if self.ssl_ca_location.is_some() && !self.security_protocol.uses_tls() {
            return Invalid::err("kafka.ssl_ca_location is set but security_protocol uses no TLS");
        }
        Ok(())
    }
}
