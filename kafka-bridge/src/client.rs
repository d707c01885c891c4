//! Client settings shared by every consumer, producer and admin client.

use crate::KafkaConfig;
use rdkafka::{ClientConfig, config::RDKafkaLogLevel};

/// librdkafka's log lines, as our log lines.
pub fn log(level: RDKafkaLogLevel, fac: &str, log_message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{log_message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
        _ => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
    }
}

pub fn base(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set(
        "bootstrap.servers",
        cfg.brokers.as_deref().unwrap_or_default(),
    )
    .set("client.id", "imgpipe")
    .set("socket.timeout.ms", millis(cfg.timeout))
    .set("log_level", "4");
    security(cfg, &mut c);
    c
}

/// TLS and SASL, the same for every client.
fn security(cfg: &KafkaConfig, c: &mut ClientConfig) {
    c.set("security.protocol", cfg.security_protocol.as_str());
    if cfg.security_protocol.uses_sasl() {
        if let Some(mechanism) = &cfg.sasl_mechanism {
            c.set("sasl.mechanism", mechanism);
        }
        if let Some(user) = &cfg.sasl_username {
            c.set("sasl.username", user);
        }
        if let Some(password) = &cfg.sasl_password {
            c.set("sasl.password", &password.0);
        }
    }
    if cfg.security_protocol.uses_tls() {
        // Brokers are checked against their certificate's names.
        c.set("ssl.endpoint.identification.algorithm", "https");
        if let Some(ca) = &cfg.ssl_ca_location {
            c.set("ssl.ca.location", ca.to_string_lossy());
        }
    }
}

pub fn producer(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = base(cfg);
    c.set("acks", "all")
        .set("message.timeout.ms", millis(cfg.timeout))
        .set("linger.ms", "5");
    c
}

/// Manual commits only (after the image is durable); a new group starts
/// at the earliest offset so nothing produced before it first ran is lost.
pub fn consumer(cfg: &KafkaConfig, group: &str, max_inflight_bytes: u64) -> ClientConfig {
    let mut c = base(cfg);
    let session = cfg.session_timeout.as_millis().max(1000);
    // The local prefetch queue is bounded too, at a quarter of the budget.
    let queued_kib = (max_inflight_bytes / 4 / 1024).clamp(1024, 2_097_151);
    let per_partition = cfg.max_image_bytes.clamp(1 << 20, 1 << 30);
    let fetch = per_partition.max(50 << 20);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session.to_string())
        .set("heartbeat.interval.ms", (session / 6).max(100).to_string())
        .set("queued.max.messages.kbytes", queued_kib.to_string())
        .set("fetch.message.max.bytes", per_partition.to_string())
        // librdkafka wants the whole fetch and the socket buffer at least as
        // large as one partition's share.
        .set("fetch.max.bytes", fetch.to_string())
        .set("receive.message.max.bytes", (fetch + (1 << 20)).to_string())
        // Topics created after subscribing are found within seconds.
        .set("topic.metadata.refresh.interval.ms", "10000");
    c
}

fn millis(d: std::time::Duration) -> String {
    d.as_millis().max(1).to_string()
}

#[cfg(test)]
mod tests {
    use lake::config::Secret;

    use crate::KafkaSecurity;

    use super::*;

    #[test]
    fn security_settings_reach_librdkafka() {
        let cfg = KafkaConfig {
            brokers: Some("b-1.msk:9096".into()),
            security_protocol: KafkaSecurity::SaslSsl,
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some("imgpipe".into()),
            sasl_password: Some(Secret("pw".into())),
            // A real bundle: librdkafka reads it when the client is made.
            ssl_ca_location: Some("/etc/ssl/certs/ca-certificates.crt".into()),
            ..KafkaConfig::default()
        };
        for c in [base(&cfg), producer(&cfg), consumer(&cfg, "g", 1 << 30)] {
            assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
            assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
            assert_eq!(c.get("sasl.username"), Some("imgpipe"));
            assert_eq!(c.get("sasl.password"), Some("pw"));
            assert_eq!(
                c.get("ssl.ca.location"),
                Some("/etc/ssl/certs/ca-certificates.crt")
            );
        }
        // librdkafka itself accepts them: this build has TLS and SCRAM.
        let admin: Result<rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>, _> =
            base(&cfg).create();
        assert!(admin.is_ok(), "{:?}", admin.err());
        let missing_ca = KafkaConfig {
            ssl_ca_location: Some("/nonexistent/ca.pem".into()),
            ..cfg.clone()
        };
        let admin: Result<rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>, _> =
            base(&missing_ca).create();
        assert!(
            admin.is_err(),
            "a CA file that is not there is refused at start"
        );
        let plain = base(&KafkaConfig::default());
        assert_eq!(plain.get("security.protocol"), Some("plaintext"));
        assert_eq!(plain.get("sasl.password"), None);
    }
}
